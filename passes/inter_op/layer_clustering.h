// Alpa's layer construction (OSDI'22, section 6, "automatic layer construction") on plain data: cut a
// sequence of forward blocks into N contiguous layers whose FLOPs are balanced within (1 + eps) of the
// mean, minimising the bytes that cross layer boundaries (ties: the smaller largest layer).
#pragma once

#include <vector>

namespace autopar::layer_clustering {

// A value produced by one block and read by later ones. Only values made by blocks count: function
// arguments (parameters, inputs) can be placed on any stage and cross no boundary.
struct Value {
  int producer = 0;
  double bytes = 0.0;
  std::vector<int> consumers;  // blocks reading it, any order, duplicates allowed
};

struct Problem {
  std::vector<double> flops;  // per block, program order
  std::vector<Value> values;
  int num_layers = 1;
  double eps = 0.6;  // a layer may have at most (1 + eps) * total / num_layers FLOPs (and, when some cut
                     // allows it, at least total / num_layers / (1 + eps))
};

struct Result {
  std::vector<int> layer_of_block;
  double boundary_bytes = 0.0;  // sum over layers of the bytes they read from earlier layers
  double max_layer_flops = 0.0;
};

// Throws std::invalid_argument on malformed input, and when no cut within eps exists (the message says
// the smallest eps that would work).
Result cluster(const Problem& problem);

// The smallest possible largest-layer FLOPs over all cuts into num_layers non-empty layers.
double min_max_layer_flops(const std::vector<double>& flops, int num_layers);

}  // namespace autopar::layer_clustering

// Alpa's stage-construction DP (OSDI'22, section 5.2) on plain data: slice L layers into contiguous stages
// and assign each stage a submesh and a logical mesh, using every device of the cluster exactly once,
// minimising the pipeline latency T = sum_k t_k + (B - 1) * max_k t_k over B micro-batches.
#pragma once

#include <limits>
#include <vector>

namespace autopar::stage_dp {

inline constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Costs of every (layer range, submesh, logical mesh), flattened row-major over
// [start layer][end layer (inclusive)][submesh][config]. Entries with end < start are ignored.
struct Problem {
  int num_layers = 0;
  int num_devices = 0;  // devices in the cluster; a plan uses all of them
  int num_micro_batches = 1;
  std::vector<int> submesh_devices;  // devices of each submesh choice
  int num_configs = 1;               // logical meshes per submesh (pad missing ones with infinity)
  std::vector<double> cost;          // seconds per micro-batch; infinity = not possible
  // Memory feasibility as Alpa states it: the largest number of stages that may follow this one (each
  // following stage keeps one more micro-batch in flight here); -1 = never fits.
  std::vector<int> max_succeeding_stages;
  // Every stage's cost must be at least t_max / (1 + tolerance); infinity disables the constraint.
  double imbalance_tolerance = kInfinity;
  int max_stages = 0;  // 0 = min(num_layers, num_devices)
};

struct Stage {
  int start_layer = 0;  // inclusive
  int end_layer = 0;    // exclusive
  int submesh = 0;
  int config = 0;
  double cost = 0.0;
};

struct Result {
  bool feasible = false;
  double latency = kInfinity;  // sum + (B - 1) * max over the chosen stages
  std::vector<Stage> stages;
  int tmax_candidates = 0;  // distinct stage costs considered as the slowest stage
  int tmax_evaluated = 0;   // how many DP runs the pruning left
};

// Validates `problem` (throws std::invalid_argument with a message naming the bad field) and solves it.
Result solve(const Problem& problem);

}  // namespace autopar::stage_dp

// The cost structure of a strategy problem in the form search wants: unary costs per node, and one pairwise
// table per pair of adjacent nodes (parallel edges summed, edges to single-strategy nodes folded into the
// neighbour's unary costs), with adjacency lists.
#pragma once

#include <cstdint>
#include <vector>

#include "passes/intra_op/strategy_problem.h"

namespace autopar::solver {

struct PairGraph {
  struct Pair {
    int32_t a, b;    // a < b
    int64_t offset;  // table is row-major |S_a| x |S_b|
  };
  struct Incidence {
    int32_t pair, other;
    bool is_a;
  };

  explicit PairGraph(const StrategyProblem& problem);

  const StrategyProblem& problem;
  std::vector<double> unary;  // same layout as problem.node_cost
  std::vector<Pair> pairs;
  std::vector<double> table;
  std::vector<int64_t> adj_offset;  // N+1
  std::vector<Incidence> adj;

  int num_strategies(int i) const { return problem.num_strategies(i); }
  double pair_cost(const Pair& pr, int sa, int sb) const {
    return table[pr.offset + static_cast<int64_t>(sa) * problem.num_strategies(pr.b) + sb];
  }
  // out[s] = unary(i, s) + sum over neighbours j of pair cost with j at solution[j].
  void local_costs(int i, const int32_t* solution, double* out) const;
};

}  // namespace autopar::solver

// The fast path of the solver: a feasible solution quickly, then better ones until the time limit.
//   1. a memory-blind greedy (each node picks its cheapest strategy given its already-placed neighbours,
//      then iterated conditional modes until no single node can improve);
//   2. memory repair: at the peak moment, switch live nodes to smaller strategies in order of cost increase
//      per byte saved until the peak fits (falls back to the minimum-usage solution);
//   3. local search that never leaves the feasible region (single-node and edge-pair moves, each checked
//      against the usage limit in O(log T) with a segment tree), and iterated perturbation of small
//      neighbourhoods with undo when the result is worse.
// Randomness comes only from `seed`; a run that stops on `max_rounds` (not on the clock) is reproducible.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "passes/intra_op/strategy_problem.h"

namespace autopar::solver {

struct HeuristicOptions {
  double time_limit = 10.0;  // seconds, wall clock
  uint64_t seed = 0;
  int64_t max_rounds = -1;  // perturbation rounds; -1: until the time limit
};

struct HeuristicResult {
  std::vector<int32_t> solution;
  double cost = 0;
  int64_t peak_usage = 0;
  bool feasible = false;
  // Lower bound on the peak of any finite-cost solution within the usage limit (each node at its smallest
  // strategy that is allowed under the limit); when it exceeds the limit the problem is proven infeasible,
  // and `solution` is then the minimum-usage solution with the limit lifted: its `peak_usage` bounds every
  // finite-cost solution's peak from below, and is reached by one when its `cost` is finite.
  int64_t min_peak_usage = 0;
  double time_to_first_feasible = -1;  // seconds; -1 if none found
  double time_to_best = 0;
  int64_t rounds = 0;
};

HeuristicResult solve_heuristic(const StrategyProblem& problem, const HeuristicOptions& options,
                                std::span<const int32_t> initial = {});

}  // namespace autopar::solver

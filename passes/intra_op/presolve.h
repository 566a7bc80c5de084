// Presolve: the strategy problem reduced to *groups* of nodes that move together, before the exact and
// large-neighbourhood paths build ILPs.
//
// Phase 1 (to a fixpoint, every rule keeps every finite-cost feasible solution):
//   - strategies with a forbidden node cost, or a usage above the limit on a node that is ever live, go;
//   - arc consistency: a strategy with no finite-cost partner in a neighbour's domain goes;
//   - singleton folding: a group left with one strategy is fixed and its pair tables are added to its
//     neighbours' unary costs;
//   - follow merging: when every strategy of group g has exactly one finite-cost partner in neighbour h, h's
//     strategy is a function f of g's; h is merged into g (its members' strategies composed with f, its unary
//     cost and the (g,h) pair cost folded into g's unary, its other pair tables re-indexed through f and
//     summed into g's).
// Phase 2 (to a fixpoint): dominated strategies go (unary cost, every pair row and every member's usage no
// better than another strategy's; groups up to kMaxDominanceStrategies), singletons are folded again. Each
// removal is logged so that any feasible solution of the original problem maps to one of the reduced problem
// that is at least as good (encode), which is what warm starts need.
//
// Memory is kept exact: a group's usage at a moment is the sum of its live members' usages (each member has
// its own interval), so memory rows over groups are the original rows.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "passes/intra_op/strategy_problem.h"

namespace autopar::solver {

inline constexpr int kMaxDominanceStrategies = 128;

struct Presolved {
  struct Member {
    int32_t node;
    std::vector<int32_t> strategy;  // original strategy of `node` per domain index of its group
  };
  struct Pair {
    int32_t a, b;               // group indices, a < b
    std::vector<double> table;  // row-major |D_a| x |D_b|
  };
  struct Removal {
    int32_t group, removed, replacement;  // root strategies (stable ids)
  };

  bool infeasible = false;  // some node has no strategy left that a finite-cost feasible solution can use
  int32_t infeasible_node = -1;
  // Groups: every node belongs to exactly one. A group's domain lists root strategies; index k of a group's
  // domain fixes every member's strategy (member.strategy[k]). Groups with a domain of size 1 are fixed.
  std::vector<int32_t> root;
  std::vector<std::vector<int32_t>> domain;
  std::vector<std::vector<Member>> members;
  std::vector<std::vector<double>> unary;
  std::vector<Pair> pairs;
  std::vector<std::vector<int32_t>> adj;  // pair indices per group
  std::vector<int32_t> group_of;          // per node
  std::vector<Removal> removals;          // phase 2, in order

  // Statistics for reports.
  int64_t merged = 0, folded = 0, dominated = 0, arc_removed = 0;
  int64_t entries_scanned = 0;  // pair table entries read by the support and follow checks

  int num_groups() const { return static_cast<int>(root.size()); }
  int num_free_groups() const;
  int num_components() const;  // connected components of the free groups' pair graph
  // Cost of a group assignment (domain index per group), without memory.
  double cost(std::span<const int32_t> assignment) const;
  // Original solution of a group assignment.
  std::vector<int32_t> expand(std::span<const int32_t> assignment) const;
  // A group assignment at least as good as `solution` (same or lower cost, no member's usage higher); empty
  // when `solution` uses a strategy no finite-cost feasible solution can use.
  std::vector<int32_t> encode(std::span<const int32_t> solution) const;
  double pair_cost(const Pair& pr, int32_t ka, int32_t kb) const {
    return pr.table[static_cast<size_t>(ka) * domain[pr.b].size() + kb];
  }
};

Presolved presolve(const StrategyProblem& problem);

}  // namespace autopar::solver

// ILPs over the presolved groups (presolve.h): the whole reduced problem for the exact path, or a
// neighbourhood of it with every other group fixed at its current strategy for large-neighbourhood search.
//   x[g,k] in {0,1}, sum_k x[g,k] = 1                        one strategy per free group
//   y[q,k,l] in [0,1], sum_l y = x[a,k], sum_k y = x[b,l]    pair q of two free groups; forbidden pairs have
//   no y sum over free members live in a segment of usage <= limit - (max usage of the fixed members there)
// Pairs to fixed groups become unary costs; x columns with a forbidden cost get upper bound 0. Memory rows
// are per segment between consecutive interval ends of free members, kept only when not implied by the next.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "passes/intra_op/memory_profile.h"
#include "passes/intra_op/presolve.h"
#include "passes/intra_op/strategy_problem.h"

namespace autopar::solver {

struct GroupIlp {
  bool too_big = false;     // more nonzeros than allowed: nothing else is filled
  bool infeasible = false;  // the fixed part alone exceeds the limit somewhere
  int64_t num_cols = 0;
  std::vector<double> col_cost, col_upper;
  std::vector<uint8_t> col_integer;
  std::vector<double> row_lower, row_upper;
  std::vector<int64_t> row_start{0};
  std::vector<int32_t> row_index;
  std::vector<double> row_value;
  double objective_offset = 0;
  std::vector<int32_t> free_groups;  // sorted
  std::vector<int64_t> x_offset;     // per free group (index into free_groups)
  std::vector<int32_t> y_col_a, y_col_b;
  int64_t y_begin = 0;
  // Memory rows (sum of coefficients <= pool_upper) left out of the model by a lazy build, for the caller
  // to add when a solution violates them (row r is [pool_start[r], pool_start[r+1]) of pool_index/value).
  std::vector<double> pool_upper;
  std::vector<int64_t> pool_start{0};
  std::vector<int32_t> pool_index;
  std::vector<double> pool_value;
  int64_t memory_rows_merged = 0;  // memory rows dropped as duplicates of another row's coefficients

  int64_t num_rows() const { return static_cast<int64_t>(row_lower.size()); }
  int64_t num_pool_rows() const { return static_cast<int64_t>(pool_upper.size()); }
  // Pool rows the assignment (of the free groups) violates, in increasing order.
  std::vector<int32_t> pool_violations(std::span<const int32_t> assignment) const;
  std::vector<double> start_vector(std::span<const int32_t> assignment) const;
  // The assignment with every free group set to its largest x.
  std::vector<int32_t> decode(std::span<const double> col_values, std::span<const int32_t> assignment) const;
};

class GroupModel {
 public:
  GroupModel(const StrategyProblem& problem, Presolved presolved);

  const Presolved& presolved() const { return r_; }
  const StrategyProblem& problem() const { return p_; }
  // Frees the listed groups that have more than one strategy (free_groups(): the whole reduced problem;
  // none: a model without columns). lazy_memory: memory rows go to the pool instead of the model
  // (max_nonzeros then bounds the model only). Memory rows with identical coefficients are merged into one
  // (the smallest right-hand side) either way. memory=false leaves the memory rows out (the relaxation a
  // memory price stands in for). keep > 0 allows each free group only its current strategy and its `keep`
  // cheapest others by local cost (unary and pairs, every neighbour at its current strategy): the others are
  // fixed to 0 and bring no pair or memory-row entries, so that a region of several times the groups costs
  // what a full-domain one does.
  GroupIlp build(std::span<const int32_t> assignment, std::span<const int32_t> free_groups,
                 int64_t max_nonzeros, bool lazy_memory = false, bool memory = true, int keep = 0) const;
  // Adds price[node] x (that node's usage) to every strategy's cost in build() and regret(): the Lagrangian
  // term of a memory price per moment summed over each node's interval. Empty: no price.
  void set_memory_price(std::span<const double> node_price);
  // Up to `size` groups with a choice, breadth-first from `root` over pairs (neighbour order shuffled by
  // `seed`); when the root's component runs out, the search restarts from the group whose first live member
  // starts next in time after the root's (memory couples groups that share moments).
  std::vector<int32_t> neighbourhood(int32_t root, int size, uint64_t seed) const;
  // Up to `size` groups with a choice whose members are live closest in (compressed) time to a moment drawn
  // among those where the assignment's usage is within `slack` (a fraction) of its peak: the groups that can
  // trade memory with each other there, whether or not they share pairs (ties shuffled by `seed`).
  std::vector<int32_t> time_window(std::span<const int32_t> assignment, int size, double slack,
                                   uint64_t seed) const;
  // Per group: its local cost now minus its best local cost with the neighbours fixed (0 for fixed groups).
  std::vector<double> regret(std::span<const int32_t> assignment) const;

 private:
  // A free group's unary cost per domain index, with the memory price when one is set.
  std::vector<double> priced_unary(int g) const;
  // Adds to `cost` (per domain index of group g) its pairs to the neighbours h at their strategies in
  // `assignment`: all of them when `is_free` is null, else those with is_free[h] == want_free. Adjacency
  // order, so that each caller's sums stay bit for bit what they were.
  void add_neighbour_costs(int g, std::span<const int32_t> assignment, const std::vector<char>* is_free,
                           bool want_free, std::vector<double>& cost) const;
  // build(keep > 0): which of group g's strategies the model allows (1) given `fixed_cost`, its cost per
  // strategy with the fixed neighbours, to which the free neighbours at their current strategies are added.
  std::vector<char> kept_strategies(int g, const std::vector<double>& fixed_cost,
                                    std::span<const int32_t> assignment, const std::vector<char>& is_free,
                                    int keep) const;
  void add_memory_rows(GroupIlp& m, std::span<const int32_t> assignment, const std::vector<char>& is_free,
                       int64_t max_nonzeros) const;
  void merge_memory_rows(GroupIlp& m, size_t first_row, bool to_pool) const;

  const StrategyProblem& p_;
  Presolved r_;
  MemoryProfile profile_;                                   // compressed time: lo/hi per node
  std::vector<std::vector<int32_t>> live_members_;          // per group: members that are ever live
  std::vector<int32_t> by_time_, time_rank_, first_point_;  // free groups by first live moment
  std::vector<std::vector<double>> price_;                  // per group, per domain index (empty: none)
};

}  // namespace autopar::solver

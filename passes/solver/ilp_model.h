// The exact path's model: the strategy problem as a 0-1 ILP, built here (fast, in C++) and solved by HiGHS
// from Python (autopar/solver.py). Before building, strategies that can never be chosen are removed
// (forbidden node cost, usage alone above the limit, dominated by another strategy of the same node), nodes
// left with one strategy are fixed and folded into their neighbours, and parallel edges are summed.
//   x[i,s] in {0,1}, sum_s x[i,s] = 1                       one strategy per free node
//   y[p,a,b] in [0,1], sum_b y = x[i,a], sum_a y = x[j,b]   pair (i,j) at (a,b); forbidden pairs have no y
//   sum_{i live at t} usage[i,s] x[i,s] <= limit - fixed    only at moments whose live set is maximal
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "csrc/strategy_problem.h"

namespace autopar::solver {

struct IlpModel {
  bool infeasible = false;  // some node has no strategy that can ever be chosen
  int64_t num_cols = 0;
  std::vector<double> col_cost, col_upper;
  std::vector<uint8_t> col_integer;
  std::vector<double> row_lower, row_upper;
  std::vector<int64_t> row_start;  // CSR, num_rows + 1
  std::vector<int32_t> row_index;
  std::vector<double> row_value;
  double objective_offset = 0;
  // Decoding: x columns are [x_offset[i], x_offset[i] + x_strategy[i].size()) for free nodes; fixed[i] >= 0
  // is the strategy of a fixed node.
  std::vector<int32_t> fixed;
  std::vector<int64_t> x_offset;
  std::vector<std::vector<int32_t>> x_strategy;
  // Each y column's pair endpoints' columns, to build a warm start: y = x_a * x_b.
  std::vector<int32_t> y_col_a, y_col_b;
  int64_t y_begin = 0;
  // Flat strategy (problem.strategy_offset layout) -> a strategy that dominates it, or -1.
  std::vector<int32_t> replacement;
  std::vector<int64_t> strategy_offset;

  int32_t replacement_of(size_t node, int32_t s) const { return replacement[strategy_offset[node] + s]; }

  int64_t num_rows() const { return static_cast<int64_t>(row_lower.size()); }
  std::vector<double> start_vector(std::span<const int32_t> solution) const;
  std::vector<int32_t> decode(std::span<const double> col_values) const;
};

// Returns a model, or one with num_cols = -1 when it would exceed max_nonzeros (the caller then keeps the
// heuristic's answer).
IlpModel build_ilp(const StrategyProblem& problem, int64_t max_nonzeros);

}  // namespace autopar::solver

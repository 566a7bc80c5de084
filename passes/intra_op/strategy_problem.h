// The strategy problem every intra-op solve works on, in the shape of the public IOPDDL contest format:
// nodes with a half-open liveness interval [start, end) and one (cost, usage) per strategy; edges with a
// cost per strategy pair (row-major over the two endpoints' strategies); an optional usage limit that the
// summed usage of the nodes live at any moment must not exceed. Costs >= kInfiniteCost mean "forbidden".
//
// Storage is flat (CSR-like offsets) so that the largest public problem (35k nodes, 55k edges, millions of
// edge-cost entries) is a handful of contiguous arrays: cheap to build, to copy into numpy, and to scan.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace autopar {

inline constexpr double kInfiniteCost = 1e18;
inline constexpr int64_t kNoUsageLimit = -1;

inline bool is_forbidden(double cost) { return !(cost < kInfiniteCost); }

struct StrategyProblem {
  std::string name;
  std::vector<int64_t> interval_start, interval_end;  // per node
  std::vector<int64_t> strategy_offset;               // N+1: strategies of node i are [off[i], off[i+1])
  std::vector<double> node_cost;                      // flat, per strategy
  std::vector<int64_t> node_usage;                    // flat, per strategy
  std::vector<int32_t> edge_u, edge_v;                // per edge
  std::vector<int64_t> edge_offset;                   // E+1: cost table of edge e is [off[e], off[e+1])
  std::vector<double> edge_cost;                      // flat, row-major |S_u| x |S_v| per edge
  int64_t usage_limit = kNoUsageLimit;

  // Filled by finalize(): nodes sorted by interval start and by interval end (for the evaluation sweep).
  std::vector<int32_t> by_start, by_end;

  int num_nodes() const { return static_cast<int>(interval_start.size()); }
  int num_edges() const { return static_cast<int>(edge_u.size()); }
  int num_strategies(int node) const {
    return static_cast<int>(strategy_offset[node + 1] - strategy_offset[node]);
  }
  bool has_usage_limit() const { return usage_limit != kNoUsageLimit; }
  double cost_of(int node, int s) const { return node_cost[strategy_offset[node] + s]; }
  int64_t usage_of(int node, int s) const { return node_usage[strategy_offset[node] + s]; }
  double edge_cost_of(int e, int su, int sv) const {
    return edge_cost[edge_offset[e] + static_cast<int64_t>(su) * num_strategies(edge_v[e]) + sv];
  }

  // Checks every array length and index; throws std::invalid_argument naming the offending node/edge.
  // Then builds the sweep orders. Every constructor path ends here.
  void finalize();
};

struct Evaluation {
  double cost = 0;         // sum of chosen node and edge costs (>= kInfiniteCost if anything forbidden)
  int64_t peak_usage = 0;  // max over time of the summed usage of live nodes
  bool feasible = false;   // no forbidden cost chosen and peak_usage <= usage_limit
};

// Sets edge_u/edge_v from 64-bit endpoints, checking each against the node count (names the edge).
void assign_edges(StrategyProblem& problem, std::span<const int64_t> u, std::span<const int64_t> v);

// Validates the solution (length, strategy ranges) and evaluates it; throws std::invalid_argument.
Evaluation evaluate(const StrategyProblem& problem, std::span<const int64_t> solution);

// Peak usage of a solution that is known to be valid (no checks); the sweep over by_start/by_end.
int64_t peak_usage(const StrategyProblem& problem, std::span<const int32_t> solution);

// Parses the contest's JSON text ({"problem": {...}} or the inner object alone). Throws
// std::invalid_argument with the byte offset for malformed JSON and the node/edge index for bad content.
StrategyProblem parse_problem_json(std::string_view text);

}  // namespace autopar

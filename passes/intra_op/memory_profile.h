// Memory usage over (compressed) time as a segment tree with range add and range max, so that a local-search
// move on one node is checked against the usage limit in O(log T) instead of re-sweeping the whole schedule.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "passes/intra_op/strategy_problem.h"

namespace autopar::solver {

class MemoryProfile {
 public:
  // Time is compressed to the distinct start times of non-empty intervals: usage only rises at a start, so
  // the peak is always attained at one of them. Node i covers points [lo(i), hi(i)) (empty if never live).
  explicit MemoryProfile(const StrategyProblem& problem);

  void reset(std::span<const int32_t> solution);
  void add(int node, int64_t delta) {
    if (lo_[node] < hi_[node]) add(1, 0, num_points_, lo_[node], hi_[node], delta);
  }
  int64_t peak() const { return num_points_ ? max_[1] : 0; }
  // Max usage over the points node i is live at (0 if it never is).
  int64_t max_over(int node) const {
    return lo_[node] < hi_[node] ? query(1, 0, num_points_, lo_[node], hi_[node]) : 0;
  }
  int64_t usage_at(int point) const { return query(1, 0, num_points_, point, point + 1); }
  int argmax_point() const;  // a point where the peak is attained
  int lo(int node) const { return lo_[node]; }
  int hi(int node) const { return hi_[node]; }
  int num_points() const { return num_points_; }

 private:
  void add(int x, int l, int r, int ql, int qr, int64_t delta);
  int64_t query(int x, int l, int r, int ql, int qr) const;

  const StrategyProblem& problem_;
  int num_points_ = 0;
  std::vector<int32_t> lo_, hi_;
  std::vector<int64_t> max_, pending_;  // max_[x] includes pending_[x] (added to the whole subtree)
};

}  // namespace autopar::solver

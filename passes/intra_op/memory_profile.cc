#include "passes/intra_op/memory_profile.h"

#include <algorithm>

namespace autopar::solver {

MemoryProfile::MemoryProfile(const StrategyProblem& p) : problem_(p) {
  std::vector<int64_t> points;
  for (int i : p.by_start) points.push_back(p.interval_start[i]);
  points.erase(std::unique(points.begin(), points.end()), points.end());  // by_start is sorted
  num_points_ = static_cast<int>(points.size());
  const int n = p.num_nodes();
  lo_.assign(n, 0);
  hi_.assign(n, 0);
  for (int i = 0; i < n; ++i) {
    if (p.interval_end[i] <= p.interval_start[i]) continue;
    lo_[i] = static_cast<int>(std::lower_bound(points.begin(), points.end(), p.interval_start[i]) -
                              points.begin());
    hi_[i] =
        static_cast<int>(std::lower_bound(points.begin(), points.end(), p.interval_end[i]) - points.begin());
  }
  max_.assign(4 * std::max(num_points_, 1), 0);
  pending_.assign(max_.size(), 0);
}

void MemoryProfile::reset(std::span<const int32_t> solution) {
  // Difference array then a bottom-up build: O(N + T) instead of N range adds.
  std::vector<int64_t> usage(num_points_ + 1, 0);
  for (int i = 0; i < problem_.num_nodes(); ++i) {
    if (lo_[i] >= hi_[i]) continue;
    const int64_t u = problem_.usage_of(i, solution[i]);
    usage[lo_[i]] += u;
    usage[hi_[i]] -= u;
  }
  for (int t = 1; t <= num_points_; ++t) usage[t] += usage[t - 1];
  std::fill(pending_.begin(), pending_.end(), 0);
  if (num_points_ == 0) return;
  auto build = [&](auto&& self, int x, int l, int r) -> void {
    if (r - l == 1) {
      max_[x] = usage[l];
      return;
    }
    const int mid = (l + r) / 2;
    self(self, 2 * x, l, mid);
    self(self, 2 * x + 1, mid, r);
    max_[x] = std::max(max_[2 * x], max_[2 * x + 1]);
  };
  build(build, 1, 0, num_points_);
}

void MemoryProfile::add(int x, int l, int r, int ql, int qr, int64_t delta) {
  if (ql <= l && r <= qr) {
    max_[x] += delta;
    pending_[x] += delta;
    return;
  }
  const int mid = (l + r) / 2;
  if (ql < mid) add(2 * x, l, mid, ql, qr, delta);
  if (qr > mid) add(2 * x + 1, mid, r, ql, qr, delta);
  max_[x] = std::max(max_[2 * x], max_[2 * x + 1]) + pending_[x];
}

int64_t MemoryProfile::query(int x, int l, int r, int ql, int qr) const {
  if (ql <= l && r <= qr) return max_[x];
  const int mid = (l + r) / 2;
  int64_t best = INT64_MIN;
  if (ql < mid) best = std::max(best, query(2 * x, l, mid, ql, qr));
  if (qr > mid) best = std::max(best, query(2 * x + 1, mid, r, ql, qr));
  return best + pending_[x];
}

int MemoryProfile::argmax_point() const {
  if (num_points_ == 0) return -1;
  int x = 1, l = 0, r = num_points_;
  while (r - l > 1) {
    const int mid = (l + r) / 2;
    if (max_[2 * x] >= max_[2 * x + 1]) {
      x = 2 * x;
      r = mid;
    } else {
      x = 2 * x + 1;
      l = mid;
    }
  }
  return l;
}

}  // namespace autopar::solver

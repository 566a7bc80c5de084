#include "passes/inter_op/stage_dp.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace autopar::stage_dp {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

void validate(const Problem& p) {
  require(p.num_layers > 0, "num_layers must be positive, got " + std::to_string(p.num_layers));
  require(p.num_devices > 0, "num_devices must be positive, got " + std::to_string(p.num_devices));
  require(p.num_micro_batches > 0,
          "num_micro_batches must be positive, got " + std::to_string(p.num_micro_batches));
  require(!p.submesh_devices.empty(), "submesh_devices is empty: give at least one submesh");
  for (int n : p.submesh_devices)
    require(n > 0, "every submesh needs at least one device, got " + std::to_string(n));
  require(p.num_configs > 0, "num_configs must be positive");
  require(p.max_stages >= 0, "max_stages must be >= 0");
  require(!(p.imbalance_tolerance < 0), "imbalance_tolerance must be >= 0");
  const size_t expected = static_cast<size_t>(p.num_layers) * p.num_layers * p.submesh_devices.size() *
                          static_cast<size_t>(p.num_configs);
  require(p.cost.size() == expected,
          "cost has " + std::to_string(p.cost.size()) +
              " entries, expected layers*layers*submeshes*configs = " + std::to_string(expected));
  require(p.max_succeeding_stages.size() == expected, "max_succeeding_stages has " +
                                                          std::to_string(p.max_succeeding_stages.size()) +
                                                          " entries, expected " + std::to_string(expected));
  for (double c : p.cost) require(!std::isnan(c) && c >= 0, "cost entries must be >= 0 (or infinity)");
}

class Solver {
 public:
  explicit Solver(const Problem& p)
      : p_(p),
        L_(p.num_layers),
        D_(p.num_devices),
        M_(static_cast<int>(p.submesh_devices.size())),
        C_(p.num_configs),
        S_(p.max_stages > 0 ? std::min({p.max_stages, p.num_layers, p.num_devices})
                            : std::min(p.num_layers, p.num_devices)) {
    f_.assign(static_cast<size_t>(S_ + 1) * (L_ + 1) * (D_ + 1), kInfinity);
    choice_.assign(f_.size(), -1);
  }

  // Distinct finite stage costs: each is a candidate for the slowest stage t_max.
  std::vector<double> candidates() const {
    std::vector<double> c;
    for (int i = 0; i < L_; ++i)
      for (int j = i; j < L_; ++j)
        for (int s = 0; s < M_; ++s)
          for (int k = 0; k < C_; ++k) {
            size_t at = index(i, j, s, k);
            if (std::isfinite(p_.cost[at]) && p_.max_succeeding_stages[at] >= 0) c.push_back(p_.cost[at]);
          }
    std::sort(c.begin(), c.end());
    c.erase(std::unique(c.begin(), c.end()), c.end());
    return c;
  }

  // Min-sum DP under "every stage costs at most t_max"; returns the best plan found (may be infeasible).
  Result run(double t_max) {
    std::fill(f_.begin(), f_.end(), kInfinity);
    f_[state(0, L_, 0)] = 0.0;
    const double t_min = std::isinf(p_.imbalance_tolerance) ? 0.0 : t_max / (1.0 + p_.imbalance_tolerance);
    for (int s = 1; s <= S_; ++s) {
      for (int k = L_ - 1; k >= 0; --k) {
        if (L_ - k < s) continue;  // fewer layers left than stages
        for (int m = k + 1; m <= L_ - (s - 1); ++m) {
          for (int sub = 0; sub < M_; ++sub) {
            const int n = p_.submesh_devices[sub];
            // The cheapest logical mesh that fits with s - 1 stages after it and respects t_max.
            int best_c = -1;
            double best = kInfinity;
            for (int c = 0; c < C_; ++c) {
              size_t at = index(k, m - 1, sub, c);
              double cost = p_.cost[at];
              if (cost <= t_max && cost >= t_min && p_.max_succeeding_stages[at] >= s - 1 && cost < best) {
                best = cost;
                best_c = c;
              }
            }
            if (best_c < 0) continue;
            for (int d = n; d <= D_; ++d) {
              double rest = f_[state(s - 1, m, d - n)];
              if (rest == kInfinity) continue;
              size_t here = state(s, k, d);
              if (rest + best < f_[here]) {
                f_[here] = rest + best;
                choice_[here] = (m * M_ + sub) * C_ + best_c;
              }
            }
          }
        }
      }
    }
    Result best;
    for (int s = 1; s <= S_; ++s) {
      if (f_[state(s, 0, D_)] == kInfinity) continue;
      Result r = reconstruct(s);
      if (r.latency < best.latency) best = r;
    }
    return best;
  }

 private:
  size_t index(int i, int j, int sub, int c) const {
    return ((static_cast<size_t>(i) * L_ + j) * M_ + sub) * C_ + c;
  }
  size_t state(int s, int k, int d) const { return (static_cast<size_t>(s) * (L_ + 1) + k) * (D_ + 1) + d; }

  Result reconstruct(int num_stages) const {
    Result r;
    r.feasible = true;
    int k = 0, d = D_;
    double sum = 0.0, slowest = 0.0;
    for (int s = num_stages; s >= 1; --s) {
      int packed = choice_[state(s, k, d)];
      int c = packed % C_;
      int sub = (packed / C_) % M_;
      int m = packed / C_ / M_;
      double cost = p_.cost[index(k, m - 1, sub, c)];
      r.stages.push_back(Stage{k, m, sub, c, cost});
      sum += cost;
      slowest = std::max(slowest, cost);
      d -= p_.submesh_devices[sub];
      k = m;
    }
    r.latency = sum + (p_.num_micro_batches - 1) * slowest;
    return r;
  }

  const Problem& p_;
  const int L_, D_, M_, C_, S_;
  std::vector<double> f_;
  std::vector<int> choice_;
};

}  // namespace

Result solve(const Problem& problem) {
  validate(problem);
  Solver solver(problem);
  const std::vector<double> candidates = solver.candidates();
  Result best;
  best.tmax_candidates = static_cast<int>(candidates.size());
  int evaluated = 0;
  // Feasibility only grows with t_max: binary search the smallest t_max that admits any plan, so that
  // the (often many) small candidates that cannot cover the model are never run one by one.
  size_t lo = 0, hi = std::isinf(problem.imbalance_tolerance) ? candidates.size() : 0;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    ++evaluated;
    Result r = solver.run(candidates[mid]);
    if (r.feasible) {
      if (r.latency < best.latency) best = r;
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  // With an imbalance tolerance, a larger t_max also forbids cheap stages: feasibility is no longer
  // monotone, so every candidate is scanned from the smallest.
  if (!std::isinf(problem.imbalance_tolerance))
    lo = 0;
  else if (lo < candidates.size())
    ++lo;  // the binary search already ran the smallest feasible t_max
  for (size_t i = lo; i < candidates.size(); ++i) {
    const double t_max = candidates[i];
    // A plan not found yet has its slowest stage at >= t_max, so it costs at least B * t_max.
    if (best.feasible && t_max * problem.num_micro_batches >= best.latency) break;
    ++evaluated;
    Result r = solver.run(t_max);
    if (r.feasible && r.latency < best.latency) best = r;
  }
  best.tmax_candidates = static_cast<int>(candidates.size());
  best.tmax_evaluated = evaluated;
  return best;
}

}  // namespace autopar::stage_dp

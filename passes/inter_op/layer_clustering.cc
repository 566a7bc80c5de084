#include "passes/inter_op/layer_clustering.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace autopar::layer_clustering {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

void validate(const Problem& p) {
  const int n = static_cast<int>(p.flops.size());
  require(n > 0, "no blocks to cluster");
  require(p.num_layers > 0, "num_layers must be positive, got " + std::to_string(p.num_layers));
  require(p.num_layers <= n, "cannot cut " + std::to_string(n) + " blocks into " +
                                 std::to_string(p.num_layers) + " layers: use at most " + std::to_string(n) +
                                 " layers");
  require(p.eps >= 0 && std::isfinite(p.eps), "eps must be a finite number >= 0");
  for (double f : p.flops) require(f >= 0 && std::isfinite(f), "block FLOPs must be finite and >= 0");
  for (size_t v = 0; v < p.values.size(); ++v) {
    const Value& value = p.values[v];
    require(value.producer >= 0 && value.producer < n, "value " + std::to_string(v) + " has producer block " +
                                                           std::to_string(value.producer) + " outside [0, " +
                                                           std::to_string(n) + ")");
    require(value.bytes >= 0 && std::isfinite(value.bytes), "value bytes must be finite and >= 0");
    for (int c : value.consumers)
      require(c >= 0 && c < n, "value " + std::to_string(v) + " has consumer block " + std::to_string(c) +
                                   " outside [0, " + std::to_string(n) + ")");
  }
}

// in_bytes[a * n + b]: bytes that blocks a..b read from blocks before a (each value counted once).
std::vector<double> boundary_bytes_table(const Problem& p) {
  const int n = static_cast<int>(p.flops.size());
  std::vector<std::vector<int>> sorted(p.values.size());
  for (size_t v = 0; v < p.values.size(); ++v) {
    sorted[v] = p.values[v].consumers;
    std::sort(sorted[v].begin(), sorted[v].end());
  }
  std::vector<double> table(static_cast<size_t>(n) * n, 0.0);
  std::vector<double> first_read_at(n);
  for (int a = 0; a < n; ++a) {
    std::fill(first_read_at.begin(), first_read_at.end(), 0.0);
    for (size_t v = 0; v < p.values.size(); ++v) {
      if (p.values[v].producer >= a) continue;
      auto it = std::lower_bound(sorted[v].begin(), sorted[v].end(), a);
      if (it != sorted[v].end()) first_read_at[*it] += p.values[v].bytes;
    }
    double running = 0.0;
    for (int b = a; b < n; ++b) {
      running += first_read_at[b];
      table[static_cast<size_t>(a) * n + b] = running;
    }
  }
  return table;
}

}  // namespace

double min_max_layer_flops(const std::vector<double>& flops, int num_layers) {
  const int n = static_cast<int>(flops.size());
  require(num_layers > 0 && num_layers <= n, "num_layers must be in [1, number of blocks]");
  std::vector<double> prefix(n + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + flops[i];
  // g[q][b]: smallest largest layer when blocks 0..b-1 form q layers.
  std::vector<double> g(static_cast<size_t>(num_layers + 1) * (n + 1), kInf);
  auto at = [&](int q, int b) -> double& { return g[static_cast<size_t>(q) * (n + 1) + b]; };
  at(0, 0) = 0.0;
  for (int q = 1; q <= num_layers; ++q)
    for (int b = q; b <= n; ++b)
      for (int a = q - 1; a < b; ++a)
        if (at(q - 1, a) < kInf) at(q, b) = std::min(at(q, b), std::max(at(q - 1, a), prefix[b] - prefix[a]));
  return at(num_layers, n);
}

Result cluster(const Problem& p) {
  validate(p);
  const int n = static_cast<int>(p.flops.size());
  const int N = p.num_layers;
  std::vector<double> prefix(n + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + p.flops[i];
  const double total = prefix[n];
  const double limit = total / N * (1.0 + p.eps) * (1.0 + 1e-12);
  const std::vector<double> in_bytes = boundary_bytes_table(p);

  // comm[q][b], peak[q][b]: best (bytes, largest layer) for blocks 0..b-1 in q layers; lexicographic.
  const size_t width = static_cast<size_t>(n) + 1;
  std::vector<double> comm, peak;
  std::vector<int> cut;
  // Layers of at least mean / (1 + eps) FLOPs first (otherwise a single cheap matmul between two small
  // boundaries becomes a layer, which breaks the uniformity stage costing relies on); without that lower
  // bound when no such cut exists.
  for (const double lower : {total / N / (1.0 + p.eps) * (1.0 - 1e-12), 0.0}) {
    comm.assign((N + 1) * width, kInf);
    peak.assign((N + 1) * width, kInf);
    cut.assign((N + 1) * width, -1);
    comm[0] = 0.0;
    peak[0] = 0.0;
    for (int q = 1; q <= N; ++q) {
      for (int b = q; b <= n - (N - q); ++b) {
        for (int a = q - 1; a < b; ++a) {
          const size_t prev = (q - 1) * width + a;
          if (comm[prev] == kInf) continue;
          const double layer_flops = prefix[b] - prefix[a];
          if (layer_flops > limit || layer_flops < lower || (total > 0 && layer_flops <= 0)) continue;
          const double c = comm[prev] + (q > 1 ? in_bytes[static_cast<size_t>(a) * n + (b - 1)] : 0.0);
          const double pk = std::max(peak[prev], layer_flops);
          const size_t here = q * width + b;
          if (c < comm[here] || (c == comm[here] && pk < peak[here])) {
            comm[here] = c;
            peak[here] = pk;
            cut[here] = a;
          }
        }
      }
    }
    if (comm[N * width + n] < kInf) break;
  }
  if (comm[N * width + n] == kInf) {
    const double best = min_max_layer_flops(p.flops, N);
    std::ostringstream message;
    if (best == kInf || total <= 0) {
      message << "cannot cut " << n << " blocks into " << N << " layers that each do some compute";
    } else {
      message << "cannot cut " << n << " blocks into " << N << " layers within eps=" << p.eps
              << " of the mean FLOPs: the most balanced cut needs eps >= " << (best * N / total - 1.0);
    }
    throw std::invalid_argument(message.str());
  }
  Result r;
  r.layer_of_block.assign(n, 0);
  r.boundary_bytes = comm[N * width + n];
  r.max_layer_flops = peak[N * width + n];
  for (int q = N, b = n; q >= 1; --q) {
    const int a = cut[q * width + b];
    for (int i = a; i < b; ++i) r.layer_of_block[i] = q - 1;
    b = a;
  }
  return r;
}

}  // namespace autopar::layer_clustering

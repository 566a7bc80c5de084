#include "passes/intra_op/pair_graph.h"

#include <algorithm>
#include <unordered_map>

namespace autopar::solver {

PairGraph::PairGraph(const StrategyProblem& p) : problem(p), unary(p.node_cost) {
  std::unordered_map<uint64_t, int32_t> index;  // (a << 32 | b) -> pair
  for (int e = 0; e < p.num_edges(); ++e) {
    const int u = p.edge_u[e], v = p.edge_v[e];
    const int su = p.num_strategies(u), sv = p.num_strategies(v);
    const double* cost = p.edge_cost.data() + p.edge_offset[e];
    if (su == 1 || sv == 1) {  // only one side has a choice: the edge is a unary cost of that side
      if (su == 1) {
        for (int s = 0; s < sv; ++s) unary[p.strategy_offset[v] + s] += cost[s];
      } else {
        for (int s = 0; s < su; ++s) unary[p.strategy_offset[u] + s] += cost[s];
      }
      continue;
    }
    const int a = std::min(u, v), b = std::max(u, v);
    const uint64_t key = (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
    auto [it, fresh] = index.try_emplace(key, static_cast<int32_t>(pairs.size()));
    if (fresh) {
      pairs.push_back({a, b, static_cast<int64_t>(table.size())});
      table.resize(table.size() + static_cast<size_t>(su) * sv, 0.0);
    }
    const Pair& pr = pairs[it->second];
    const int sb = p.num_strategies(b);
    for (int x = 0; x < su; ++x) {
      for (int y = 0; y < sv; ++y) {
        const int sa_idx = (u == a) ? x : y, sb_idx = (u == a) ? y : x;
        table[pr.offset + static_cast<int64_t>(sa_idx) * sb + sb_idx] +=
            cost[static_cast<int64_t>(x) * sv + y];
      }
    }
  }
  const int n = p.num_nodes();
  adj_offset.assign(n + 1, 0);
  for (const Pair& pr : pairs) {
    ++adj_offset[pr.a + 1];
    ++adj_offset[pr.b + 1];
  }
  for (int i = 0; i < n; ++i) adj_offset[i + 1] += adj_offset[i];
  adj.resize(adj_offset[n]);
  std::vector<int64_t> fill(adj_offset.begin(), adj_offset.end() - 1);
  for (int32_t k = 0; k < static_cast<int32_t>(pairs.size()); ++k) {
    adj[fill[pairs[k].a]++] = {k, pairs[k].b, true};
    adj[fill[pairs[k].b]++] = {k, pairs[k].a, false};
  }
}

void PairGraph::local_costs(int i, const int32_t* solution, double* out) const {
  const int s_count = num_strategies(i);
  const double* u = unary.data() + problem.strategy_offset[i];
  std::copy(u, u + s_count, out);
  for (int64_t k = adj_offset[i]; k < adj_offset[i + 1]; ++k) {
    const Incidence& inc = adj[k];
    const Pair& pr = pairs[inc.pair];
    const int sj = solution[inc.other];
    if (inc.is_a) {  // i is the row: column sj, stride |S_b|
      const int stride = num_strategies(pr.b);
      const double* col = table.data() + pr.offset + sj;
      for (int s = 0; s < s_count; ++s) out[s] += col[static_cast<int64_t>(s) * stride];
    } else {  // i is the column: row sj is contiguous
      const double* row = table.data() + pr.offset + static_cast<int64_t>(sj) * s_count;
      for (int s = 0; s < s_count; ++s) out[s] += row[s];
    }
  }
}

}  // namespace autopar::solver

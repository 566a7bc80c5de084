#include "passes/solver/ilp_model.h"

#include <algorithm>
#include <limits>

#include "passes/solver/memory_profile.h"
#include "passes/solver/pair_graph.h"

namespace autopar::solver {
namespace {

constexpr int kMaxDominanceStrategies = 64;  // dominance is quadratic in strategies; skip wider nodes

struct Reduction {
  std::vector<std::vector<int32_t>> allowed;
  std::vector<double> unary;
  std::vector<char> pair_alive;
  std::vector<int32_t> fixed;
  std::vector<int32_t> replacement;  // flat strategy -> a strategy at least as good, or -1
  bool infeasible = false;
};

// Whether strategy t of node i is at least as good as s in every respect (cost, usage, every pair cost).
bool dominates(const PairGraph& g, const Reduction& r, int i, int t, int s) {
  const StrategyProblem& p = g.problem;
  const int64_t off = p.strategy_offset[i];
  if (r.unary[off + t] > r.unary[off + s] || p.usage_of(i, t) > p.usage_of(i, s)) return false;
  for (int64_t k = g.adj_offset[i]; k < g.adj_offset[i + 1]; ++k) {
    const auto& inc = g.adj[k];
    if (!r.pair_alive[inc.pair]) continue;
    const auto& pr = g.pairs[inc.pair];
    for (int32_t o : r.allowed[inc.other]) {
      const double ct = inc.is_a ? g.pair_cost(pr, t, o) : g.pair_cost(pr, o, t);
      const double cs = inc.is_a ? g.pair_cost(pr, s, o) : g.pair_cost(pr, o, s);
      if (ct > cs) return false;
    }
  }
  return true;
}

void fix_node(const PairGraph& g, Reduction& r, int i) {
  const StrategyProblem& p = g.problem;
  const int s = r.allowed[i][0];
  r.fixed[i] = s;
  for (int64_t k = g.adj_offset[i]; k < g.adj_offset[i + 1]; ++k) {
    const auto& inc = g.adj[k];
    if (!r.pair_alive[inc.pair]) continue;
    r.pair_alive[inc.pair] = 0;
    const auto& pr = g.pairs[inc.pair];
    const int j = inc.other;
    const int64_t off = p.strategy_offset[j];
    for (int o = 0; o < p.num_strategies(j); ++o)
      r.unary[off + o] += inc.is_a ? g.pair_cost(pr, s, o) : g.pair_cost(pr, o, s);
  }
}

Reduction reduce(const PairGraph& g) {
  const StrategyProblem& p = g.problem;
  const int n = p.num_nodes();
  Reduction r;
  r.unary = g.unary;
  r.pair_alive.assign(g.pairs.size(), 1);
  r.fixed.assign(n, -1);
  r.replacement.assign(p.node_cost.size(), -1);
  r.allowed.resize(n);
  const int64_t limit = p.has_usage_limit() ? p.usage_limit : std::numeric_limits<int64_t>::max();
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < p.num_strategies(i); ++s) {
      if (p.usage_of(i, s) <= limit) r.allowed[i].push_back(s);
    }
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (int i = 0; i < n; ++i) {
      if (r.fixed[i] >= 0) continue;
      auto& al = r.allowed[i];
      const int64_t off = p.strategy_offset[i];
      const size_t before = al.size();
      std::erase_if(al, [&](int32_t s) { return is_forbidden(r.unary[off + s]); });
      if (al.empty()) {
        r.infeasible = true;
        return r;
      }
      if (al.size() > 1 && al.size() <= kMaxDominanceStrategies) {
        std::vector<int32_t> kept;
        for (int32_t s : al) {
          int32_t by = -1;
          for (int32_t t : al) {
            if (t == s || !dominates(g, r, i, t, s)) continue;
            if (!dominates(g, r, i, s, t) || t < s) {
              by = t;
              break;
            }
          }
          if (by >= 0) {
            r.replacement[off + s] = by;
          } else {
            kept.push_back(s);
          }
        }
        al = std::move(kept);
      }
      changed |= al.size() != before;
      if (al.size() == 1) {
        fix_node(g, r, i);
        changed = true;
      }
    }
  }
  return r;
}

}  // namespace

IlpModel build_ilp(const StrategyProblem& p, int64_t max_nonzeros) {
  const PairGraph g(p);
  Reduction r = reduce(g);
  IlpModel m;
  const int n = p.num_nodes();
  m.fixed = r.fixed;
  if (r.infeasible) {
    m.infeasible = true;
    return m;
  }
  // x columns.
  m.x_offset.assign(n, -1);
  m.x_strategy.resize(n);
  for (int i = 0; i < n; ++i) {
    if (r.fixed[i] >= 0) {
      m.objective_offset += r.unary[p.strategy_offset[i] + r.fixed[i]];
      continue;
    }
    m.x_offset[i] = m.num_cols;
    m.x_strategy[i] = r.allowed[i];
    for (int32_t s : r.allowed[i]) {
      m.col_cost.push_back(r.unary[p.strategy_offset[i] + s]);
      m.col_upper.push_back(1);
      m.col_integer.push_back(1);
      ++m.num_cols;
    }
  }
  m.y_begin = m.num_cols;
  m.row_start.push_back(0);
  auto end_row = [&](double lo, double hi) {
    m.row_lower.push_back(lo);
    m.row_upper.push_back(hi);
    m.row_start.push_back(static_cast<int64_t>(m.row_index.size()));
  };
  auto too_big = [&] { return static_cast<int64_t>(m.row_index.size()) > max_nonzeros; };
  for (int i = 0; i < n; ++i) {  // one strategy per free node
    if (r.fixed[i] >= 0) continue;
    for (size_t k = 0; k < r.allowed[i].size(); ++k) {
      m.row_index.push_back(static_cast<int32_t>(m.x_offset[i] + k));
      m.row_value.push_back(1);
    }
    end_row(1, 1);
  }
  // y columns and their marginal rows, pair by pair.
  for (size_t k = 0; k < g.pairs.size(); ++k) {
    if (!r.pair_alive[k]) continue;
    const auto& pr = g.pairs[k];
    const auto& al_a = r.allowed[pr.a];
    const auto& al_b = r.allowed[pr.b];
    std::vector<std::vector<int32_t>> by_a(al_a.size()), by_b(al_b.size());
    for (size_t x = 0; x < al_a.size(); ++x) {
      for (size_t y = 0; y < al_b.size(); ++y) {
        const double c = g.pair_cost(pr, al_a[x], al_b[y]);
        if (is_forbidden(c)) continue;
        const int32_t col = static_cast<int32_t>(m.num_cols++);
        m.col_cost.push_back(c);
        m.col_upper.push_back(1);
        m.col_integer.push_back(0);
        m.y_col_a.push_back(static_cast<int32_t>(m.x_offset[pr.a] + x));
        m.y_col_b.push_back(static_cast<int32_t>(m.x_offset[pr.b] + y));
        by_a[x].push_back(col);
        by_b[y].push_back(col);
      }
    }
    for (int side = 0; side < 2; ++side) {
      const auto& groups = side == 0 ? by_a : by_b;
      const int64_t x_off = side == 0 ? m.x_offset[pr.a] : m.x_offset[pr.b];
      for (size_t x = 0; x < groups.size(); ++x) {
        for (int32_t col : groups[x]) {
          m.row_index.push_back(col);
          m.row_value.push_back(1);
        }
        m.row_index.push_back(static_cast<int32_t>(x_off + x));
        m.row_value.push_back(-1);
        end_row(0, 0);
      }
    }
    if (too_big()) {
      m.num_cols = -1;
      return m;
    }
  }
  if (p.has_usage_limit()) {
    // Sweep the compressed time axis with a live list; a moment needs a row only if some node dies right
    // after it (otherwise the next moment's live set contains this one's).
    const MemoryProfile prof(p);
    const int points = prof.num_points();
    std::vector<std::vector<int32_t>> starting(points), ending(points + 1);
    for (int i = 0; i < n; ++i) {
      if (prof.lo(i) >= prof.hi(i)) continue;
      starting[prof.lo(i)].push_back(i);
      ending[prof.hi(i)].push_back(i);
    }
    std::vector<int32_t> live, where(n, -1);
    for (int t = 0; t < points; ++t) {
      for (int32_t i : ending[t]) {  // swap-remove
        const int32_t w = where[i];
        live[w] = live.back();
        where[live[w]] = w;
        live.pop_back();
        where[i] = -1;
      }
      for (int32_t i : starting[t]) {
        where[i] = static_cast<int32_t>(live.size());
        live.push_back(i);
      }
      if (ending[t + 1].empty() && t + 1 < points) continue;
      double rhs = static_cast<double>(p.usage_limit), spread = 0;
      const size_t row_begin = m.row_index.size();
      std::vector<int32_t> sorted_live(live);
      std::sort(sorted_live.begin(), sorted_live.end());  // deterministic column order
      for (int32_t i : sorted_live) {
        if (r.fixed[i] >= 0) {
          rhs -= static_cast<double>(p.usage_of(i, r.fixed[i]));
          continue;
        }
        int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
        for (int32_t s : r.allowed[i]) {
          lo = std::min(lo, p.usage_of(i, s));
          hi = std::max(hi, p.usage_of(i, s));
        }
        rhs -= static_cast<double>(lo);
        spread += static_cast<double>(hi - lo);
        for (size_t k = 0; k < r.allowed[i].size(); ++k) {
          const int64_t extra = p.usage_of(i, r.allowed[i][k]) - lo;
          if (extra == 0) continue;
          m.row_index.push_back(static_cast<int32_t>(m.x_offset[i] + k));
          m.row_value.push_back(static_cast<double>(extra));
        }
      }
      if (rhs < 0) {
        m.infeasible = true;
        return m;
      }
      if (spread <= rhs) {  // cannot be violated: drop the row
        m.row_index.resize(row_begin);
        m.row_value.resize(row_begin);
        continue;
      }
      end_row(-std::numeric_limits<double>::infinity(), rhs);
      if (too_big()) {
        m.num_cols = -1;
        return m;
      }
    }
  }
  m.replacement = std::move(r.replacement);  // for warm starts
  m.strategy_offset = p.strategy_offset;
  return m;
}

std::vector<double> IlpModel::start_vector(std::span<const int32_t> solution) const {
  // Dominated strategies are replaced by their dominators (a chain ends at a kept strategy); returns an empty
  // vector if the solution uses a strategy the model excludes for another reason.
  std::vector<double> values(num_cols, 0.0);
  for (size_t i = 0; i < fixed.size(); ++i) {
    if (fixed[i] >= 0) continue;
    int32_t s = solution[i];
    const auto& al = x_strategy[i];
    for (int guard = 0; guard < 1000; ++guard) {
      if (std::find(al.begin(), al.end(), s) != al.end()) break;
      const int32_t next = replacement_of(i, s);
      if (next < 0) return {};
      s = next;
    }
    const auto it = std::find(al.begin(), al.end(), s);
    if (it == al.end()) return {};
    values[x_offset[i] + (it - al.begin())] = 1.0;
  }
  for (size_t k = 0; k < y_col_a.size(); ++k) values[y_begin + k] = values[y_col_a[k]] * values[y_col_b[k]];
  return values;
}

std::vector<int32_t> IlpModel::decode(std::span<const double> col_values) const {
  std::vector<int32_t> solution(fixed.size(), 0);
  for (size_t i = 0; i < fixed.size(); ++i) {
    if (fixed[i] >= 0) {
      solution[i] = fixed[i];
      continue;
    }
    const auto& al = x_strategy[i];
    size_t best = 0;
    for (size_t k = 1; k < al.size(); ++k) {
      if (col_values[x_offset[i] + k] > col_values[x_offset[i] + best]) best = k;
    }
    solution[i] = al[best];
  }
  return solution;
}

}  // namespace autopar::solver

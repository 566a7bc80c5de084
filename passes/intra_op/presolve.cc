#include "passes/intra_op/presolve.h"

#include <algorithm>
#include <array>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace autopar::solver {
namespace {

// a <= b where every forbidden value counts as equal (sums of forbidden costs differ in their low digits).
bool no_worse(double a, double b) { return is_forbidden(b) || (!is_forbidden(a) && a <= b); }

class Reducer {
 public:
  explicit Reducer(const StrategyProblem& p) : p_(p) {}
  Presolved run();

 private:
  using Pair = Presolved::Pair;

  size_t dsize(int g) const { return domain_[g].size(); }
  double at(const Pair& pr, int g, size_t kg, size_t kh) const {  // oriented from g's side
    return g == pr.a ? pr.table[kg * dsize(pr.b) + kh] : pr.table[kh * dsize(pr.b) + kg];
  }
  int other(const Pair& pr, int g) const { return g == pr.a ? pr.b : pr.a; }
  void push(int g) {
    if (!queued_[g]) {
      queued_[g] = 1;
      work_.push_back(g);
    }
  }
  void push_neighbours(int g) {
    for (int32_t q : adj_[g]) {
      if (pair_alive_[q]) push(other(pairs_[q], g));
    }
  }
  void clean_adj(int g) {
    std::erase_if(adj_[g], [&](int32_t q) { return !pair_alive_[q]; });
  }
  int side(int32_t q, int g) const { return g == pairs_[q].a ? 0 : 1; }
  void kill_pair(int32_t q) {
    pair_alive_[q] = 0;
    index_.erase(key(pairs_[q].a, pairs_[q].b));
  }
  static uint64_t key(int a, int b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
  // Adds c (|D_g| x |D_x|, oriented from g) into the pair (g, x), creating it if needed.
  void add_table(int g, int x, const std::vector<double>& c);
  void compact(int g, const std::vector<char>& keep);
  bool prune(int g);
  void fold(int g);
  std::vector<int32_t> follow_map(const Pair& pr, int g);
  // follow_map(pairs_[q], g) when the pair changed since that side's was last found empty, else empty.
  std::vector<int32_t> stale_follow_map(int32_t q, int g) {
    char& stale = follow_stale_[q][side(q, g)];
    if (!stale) return {};
    stale = 0;
    return follow_map(pairs_[q], g);
  }
  void merge(int g, int h, int32_t q, const std::vector<int32_t>& f);
  bool dominates(int g, size_t t, size_t s) const;
  bool dominance_pass(int g);
  Presolved finish();

  const StrategyProblem& p_;
  std::vector<char> alive_, queued_, pair_alive_;
  // Per pair and side (0: a, 1: b): whether the pair changed (its table, or a domain) since that side's
  // supports (prune) or follow map (follow_map) were last computed; a pair that did not change gives the
  // same answer. Why: a group absorbs its follow neighbours one merge at a time and is revisited after
  // each; recomputing both over all its pairs every time made presolve quadratic in the merges (D, whose
  // 40,958 nodes end in 236 groups: 2.2G table entries read in 5.3 s, now 8.5M in 0.5 s; docs/solver.md,
  // "Presolve").
  std::vector<std::array<char, 2>> support_stale_, follow_stale_;
  std::vector<std::vector<int32_t>> domain_;
  std::vector<std::vector<Presolved::Member>> members_;
  std::vector<std::vector<double>> unary_;
  std::vector<Pair> pairs_;
  std::vector<std::vector<int32_t>> adj_;
  std::unordered_map<uint64_t, int32_t> index_;
  std::vector<int32_t> work_;
  Presolved out_;
};

void Reducer::add_table(int g, int x, const std::vector<double>& c) {
  const int a = std::min(g, x), b = std::max(g, x);
  auto [it, fresh] = index_.try_emplace(key(a, b), static_cast<int32_t>(pairs_.size()));
  if (fresh) {
    pairs_.push_back({a, b, std::vector<double>(dsize(a) * dsize(b), 0.0)});
    pair_alive_.push_back(1);
    support_stale_.emplace_back();  // both marked stale below, as every table change is
    follow_stale_.emplace_back();
    adj_[a].push_back(it->second);
    adj_[b].push_back(it->second);
  }
  Pair& pr = pairs_[it->second];
  const size_t dg = dsize(g), dx = dsize(x);
  for (size_t k = 0; k < dg; ++k) {
    for (size_t l = 0; l < dx; ++l) {
      const double v = c[k * dx + l];
      (g == a ? pr.table[k * dx + l] : pr.table[l * dg + k]) += v;
    }
  }
  support_stale_[it->second] = follow_stale_[it->second] = {1, 1};
}

void Reducer::compact(int g, const std::vector<char>& keep) {
  const size_t d = dsize(g);
  std::vector<size_t> kept;
  for (size_t k = 0; k < d; ++k) {
    if (keep[k]) kept.push_back(k);
  }
  auto select = [&](auto& v) {
    std::remove_reference_t<decltype(v)> n;
    for (size_t k : kept) n.push_back(v[k]);
    v = std::move(n);
  };
  for (int32_t q : adj_[g]) {
    if (!pair_alive_[q]) continue;
    Pair& pr = pairs_[q];
    const size_t db = dsize(pr.b);
    std::vector<double> t;
    if (pr.a == g) {
      for (size_t k : kept) t.insert(t.end(), pr.table.begin() + k * db, pr.table.begin() + (k + 1) * db);
    } else {
      const size_t da = dsize(pr.a);
      for (size_t r = 0; r < da; ++r) {
        for (size_t k : kept) t.push_back(pr.table[r * db + k]);
      }
    }
    pr.table = std::move(t);
    // The other side's strategies may have lost their only finite entry (g's own keep their supports),
    // and either side may now follow the other (g's rows that had several finite entries may be gone).
    support_stale_[q][1 - side(q, g)] = 1;
    follow_stale_[q] = {1, 1};
  }
  select(domain_[g]);
  select(unary_[g]);
  for (auto& m : members_[g]) select(m.strategy);
}

bool Reducer::prune(int g) {
  const size_t d = dsize(g);
  std::vector<char> keep(d, 1);
  size_t removed = 0;
  for (size_t k = 0; k < d; ++k) {
    if (is_forbidden(unary_[g][k])) keep[k] = 0;
  }
  for (int32_t q : adj_[g]) {
    // Unchanged since its last check, the pair still supports every strategy g kept then.
    char& stale = support_stale_[q][side(q, g)];
    if (!stale) continue;
    stale = 0;
    const Pair& pr = pairs_[q];
    const int h = other(pr, g);
    for (size_t k = 0; k < d; ++k) {
      if (!keep[k]) continue;
      bool supported = false;
      for (size_t l = 0; l < dsize(h) && !supported; ++l) {
        ++out_.entries_scanned;
        supported = !is_forbidden(at(pr, g, k, l));
      }
      keep[k] = supported;
    }
  }
  for (size_t k = 0; k < d; ++k) removed += !keep[k];
  if (removed == 0) return false;
  out_.arc_removed += static_cast<int64_t>(removed);
  compact(g, keep);
  return true;
}

void Reducer::fold(int g) {
  for (int32_t q : adj_[g]) {
    if (!pair_alive_[q]) continue;
    const Pair& pr = pairs_[q];
    const int h = other(pr, g);
    for (size_t l = 0; l < dsize(h); ++l) unary_[h][l] += at(pr, g, 0, l);
    kill_pair(q);
    push(h);
  }
  adj_[g].clear();
  ++out_.folded;
}

std::vector<int32_t> Reducer::follow_map(const Pair& pr, int g) {
  // f[k] = the one strategy of the other side with a finite cost against g's k; empty if some k has several.
  const int h = other(pr, g);
  std::vector<int32_t> f(dsize(g), -1);
  for (size_t k = 0; k < dsize(g); ++k) {
    for (size_t l = 0; l < dsize(h); ++l) {
      ++out_.entries_scanned;
      if (is_forbidden(at(pr, g, k, l))) continue;
      if (f[k] >= 0) return {};
      f[k] = static_cast<int32_t>(l);
    }
    if (f[k] < 0) return {};  // unsupported: prune first
  }
  return f;
}

void Reducer::merge(int g, int h, int32_t q, const std::vector<int32_t>& f) {
  const size_t dg = dsize(g);
  for (size_t k = 0; k < dg; ++k) unary_[g][k] += unary_[h][f[k]] + at(pairs_[q], g, k, f[k]);
  kill_pair(q);
  for (auto& m : members_[h]) {
    std::vector<int32_t> s(dg);
    for (size_t k = 0; k < dg; ++k) s[k] = m.strategy[f[k]];
    members_[g].push_back({m.node, std::move(s)});
  }
  members_[h].clear();
  const std::vector<int32_t> hadj = adj_[h];
  for (int32_t r : hadj) {
    if (!pair_alive_[r]) continue;
    const int x = other(pairs_[r], h);
    const size_t dx = dsize(x);
    std::vector<double> c(dg * dx);
    for (size_t k = 0; k < dg; ++k) {
      for (size_t l = 0; l < dx; ++l) c[k * dx + l] = at(pairs_[r], h, f[k], l);
    }
    kill_pair(r);
    add_table(g, x, c);
    push(x);
  }
  adj_[h].clear();
  alive_[h] = 0;
  ++out_.merged;
}

bool Reducer::dominates(int g, size_t t, size_t s) const {
  if (!no_worse(unary_[g][t], unary_[g][s])) return false;
  for (const auto& m : members_[g]) {
    if (p_.interval_end[m.node] > p_.interval_start[m.node] &&
        p_.usage_of(m.node, m.strategy[t]) > p_.usage_of(m.node, m.strategy[s])) {
      return false;
    }
  }
  for (int32_t q : adj_[g]) {
    const Pair& pr = pairs_[q];
    const int h = other(pr, g);
    for (size_t l = 0; l < dsize(h); ++l) {
      if (!no_worse(at(pr, g, t, l), at(pr, g, s, l))) return false;
    }
  }
  return true;
}

bool Reducer::dominance_pass(int g) {
  const size_t d = dsize(g);
  std::vector<char> keep(d, 1);
  bool any = false;
  for (size_t s = 0; s < d; ++s) {
    for (size_t t = 0; t < d; ++t) {
      if (t == s || !keep[t] || !dominates(g, t, s)) continue;
      if (t > s && dominates(g, s, t)) continue;  // equivalent: keep the lower index
      keep[s] = 0;
      out_.removals.push_back({g, domain_[g][s], domain_[g][t]});
      ++out_.dominated;
      any = true;
      break;
    }
  }
  if (any) compact(g, keep);
  return any;
}

Presolved Reducer::run() {
  const int n = p_.num_nodes();
  const int64_t limit = p_.has_usage_limit() ? p_.usage_limit : std::numeric_limits<int64_t>::max();
  alive_.assign(n, 1);
  queued_.assign(n, 0);
  domain_.resize(n);
  members_.resize(n);
  unary_.resize(n);
  adj_.resize(n);
  for (int i = 0; i < n; ++i) {
    const bool live = p_.interval_end[i] > p_.interval_start[i];
    for (int s = 0; s < p_.num_strategies(i); ++s) {
      if (is_forbidden(p_.cost_of(i, s)) || (live && p_.usage_of(i, s) > limit)) continue;
      domain_[i].push_back(s);
      unary_[i].push_back(p_.cost_of(i, s));
    }
    members_[i].push_back({i, domain_[i]});
    if (domain_[i].empty()) {
      out_.infeasible = true;
      out_.infeasible_node = i;
      return std::move(out_);
    }
  }
  for (int e = 0; e < p_.num_edges(); ++e) {
    const int u = p_.edge_u[e], v = p_.edge_v[e];
    if (u == v) {  // a self-edge is a unary cost on the diagonal
      for (size_t k = 0; k < dsize(u); ++k) unary_[u][k] += p_.edge_cost_of(e, domain_[u][k], domain_[u][k]);
      continue;
    }
    std::vector<double> c(dsize(u) * dsize(v));
    for (size_t k = 0; k < dsize(u); ++k) {
      for (size_t l = 0; l < dsize(v); ++l)
        c[k * dsize(v) + l] = p_.edge_cost_of(e, domain_[u][k], domain_[v][l]);
    }
    add_table(u, v, c);
  }
  for (int i = n - 1; i >= 0; --i) push(i);  // popped from the back: index order
  // Phase 1.
  while (!work_.empty()) {
    const int g = work_.back();
    work_.pop_back();
    queued_[g] = 0;
    if (!alive_[g]) continue;
    clean_adj(g);
    if (prune(g)) {
      if (domain_[g].empty()) {
        out_.infeasible = true;
        out_.infeasible_node = members_[g].front().node;
        return std::move(out_);
      }
      push_neighbours(g);
    }
    if (dsize(g) == 1) {
      fold(g);
      continue;
    }
    const std::vector<int32_t> gadj = adj_[g];
    for (int32_t q : gadj) {
      if (!pair_alive_[q]) continue;
      const int h = other(pairs_[q], g);
      if (auto f = stale_follow_map(q, g); !f.empty()) {
        merge(g, h, q, f);
        push(g);
        break;
      }
      if (auto f = stale_follow_map(q, h); !f.empty()) {
        merge(h, g, q, f);
        push(h);
        break;
      }
    }
  }
  // Phase 2: dominance and the singletons it leaves, to a fixpoint.
  for (bool changed = true; changed;) {
    changed = false;
    for (int g = 0; g < n; ++g) {
      if (!alive_[g] || dsize(g) <= 1 || dsize(g) > static_cast<size_t>(kMaxDominanceStrategies)) continue;
      clean_adj(g);
      if (!dominance_pass(g)) continue;
      changed = true;
      if (dsize(g) == 1) fold(g);
    }
  }
  return finish();
}

Presolved Reducer::finish() {
  const int n = p_.num_nodes();
  std::vector<int32_t> renumber(n, -1);
  for (int g = 0; g < n; ++g) {
    if (!alive_[g]) continue;
    renumber[g] = out_.num_groups();
    out_.root.push_back(g);
    out_.domain.push_back(std::move(domain_[g]));
    std::sort(members_[g].begin(), members_[g].end(),
              [](const auto& x, const auto& y) { return x.node < y.node; });
    out_.members.push_back(std::move(members_[g]));
    out_.unary.push_back(std::move(unary_[g]));
  }
  out_.adj.resize(out_.num_groups());
  for (size_t q = 0; q < pairs_.size(); ++q) {
    if (!pair_alive_[q]) continue;
    const int32_t k = static_cast<int32_t>(out_.pairs.size());
    out_.pairs.push_back({renumber[pairs_[q].a], renumber[pairs_[q].b], std::move(pairs_[q].table)});
    out_.adj[out_.pairs.back().a].push_back(k);
    out_.adj[out_.pairs.back().b].push_back(k);
  }
  for (auto& r : out_.removals) r.group = renumber[r.group];
  out_.group_of.assign(n, -1);
  for (int g = 0; g < out_.num_groups(); ++g) {
    for (const auto& m : out_.members[g]) out_.group_of[m.node] = g;
  }
  return std::move(out_);
}

}  // namespace

int Presolved::num_free_groups() const {
  int c = 0;
  for (const auto& d : domain) c += d.size() > 1;
  return c;
}

int Presolved::num_components() const {
  std::vector<int32_t> parent(num_groups());
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (const auto& pr : pairs) parent[find(pr.a)] = find(pr.b);
  int c = 0;
  for (int g = 0; g < num_groups(); ++g) c += domain[g].size() > 1 && find(g) == g;
  return c;
}

double Presolved::cost(std::span<const int32_t> assignment) const {
  double c = 0;
  for (int g = 0; g < num_groups(); ++g) c += unary[g][assignment[g]];
  for (const auto& pr : pairs) c += pair_cost(pr, assignment[pr.a], assignment[pr.b]);
  return c;
}

std::vector<int32_t> Presolved::expand(std::span<const int32_t> assignment) const {
  std::vector<int32_t> solution(group_of.size(), 0);
  for (int g = 0; g < num_groups(); ++g) {
    for (const auto& m : members[g]) solution[m.node] = m.strategy[assignment[g]];
  }
  return solution;
}

std::vector<int32_t> Presolved::encode(std::span<const int32_t> solution) const {
  std::vector<int32_t> current(num_groups());
  for (int g = 0; g < num_groups(); ++g) current[g] = solution[root[g]];
  for (const auto& r : removals) {  // in removal order: each was checked against the domains of its time
    if (current[r.group] == r.removed) current[r.group] = r.replacement;
  }
  std::vector<int32_t> assignment(num_groups());
  for (int g = 0; g < num_groups(); ++g) {
    const auto it = std::find(domain[g].begin(), domain[g].end(), current[g]);
    if (it == domain[g].end()) return {};
    assignment[g] = static_cast<int32_t>(it - domain[g].begin());
  }
  return assignment;
}

Presolved presolve(const StrategyProblem& problem) { return Reducer(problem).run(); }

}  // namespace autopar::solver

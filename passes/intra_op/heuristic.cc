#include "passes/intra_op/heuristic.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

#include "passes/intra_op/memory_profile.h"
#include "passes/intra_op/pair_graph.h"

namespace autopar::solver {
namespace {

using Clock = std::chrono::steady_clock;

// A move must gain more than this (relative) to count: stops cycling on floating-point noise.
constexpr double kRelativeGain = 1e-12;
// Largest cascade of a perturbation (a local move). Repairs (memory, forbidden pairs) may move a whole follow
// chain instead, up to kRepairCascadePerNode x the node count: presolve merges chains of over a thousand
// nodes on some contest problems (L: 20 groups of 334-1,516 nodes, 12,630 nodes in all), which no cascade
// capped at 256 can move, so repair could not change their strategies at all.
constexpr size_t kMaxCascade = 256;
constexpr size_t kRepairCascadePerNode = 2;
constexpr int kMaxPairTable = 4096;  // edge-pair moves skip larger tables (too slow to scan per move)

struct Change {
  int node, old_strategy;
};

class Search {
 public:
  Search(const StrategyProblem& p, const HeuristicOptions& options)
      : p_(p),
        graph_(p),
        profile_(p),
        options_(options),
        rng_(options.seed),
        start_(Clock::now()),
        limit_(p.has_usage_limit() ? p.usage_limit : std::numeric_limits<int64_t>::max() / 4),
        sol_(p.num_nodes(), 0),
        queued_(p.num_nodes(), 0) {
    int max_s = 1;
    for (int i = 0; i < p.num_nodes(); ++i) max_s = std::max(max_s, p.num_strategies(i));
    scratch_.resize(max_s);
    scratch2_.resize(max_s);
  }

  HeuristicResult run(std::span<const int32_t> initial);

 private:
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  bool out_of_time() const { return elapsed() >= options_.time_limit; }
  int64_t usage(int i, int s) const { return p_.usage_of(i, s); }
  bool allowed(int i, int s) const { return alive_[p_.strategy_offset[i] + s]; }

  void set_solution(std::span<const int32_t> solution) {
    std::copy(solution.begin(), solution.end(), sol_.begin());
    profile_.reset(sol_);
  }
  void apply(int i, int s) {
    if (journal_on_) journal_.push_back({i, sol_[i]});
    profile_.add(i, usage(i, s) - usage(i, sol_[i]));
    sol_[i] = s;
  }
  bool fits(int i, int s, int64_t max_over_i) const {
    const int64_t d = usage(i, s) - usage(i, sol_[i]);
    return d <= 0 || max_over_i + d <= limit_;
  }
  double exact_cost() const {
    double c = 0;
    for (int i = 0; i < p_.num_nodes(); ++i) c += graph_.unary[p_.strategy_offset[i] + sol_[i]];
    for (const auto& pr : graph_.pairs) c += graph_.pair_cost(pr, sol_[pr.a], sol_[pr.b]);
    return c;
  }

  bool propagate();
  bool cascade(int i, int s, double* delta, std::vector<Change>* changes, size_t max_size = kMaxCascade);
  size_t repair_cascade_limit() const {
    return std::max(kMaxCascade, kRepairCascadePerNode * static_cast<size_t>(p_.num_nodes()));
  }
  bool is_forbidden_pair(const PairGraph::Pair& pr) const {
    return is_forbidden(graph_.pair_cost(pr, sol_[pr.a], sol_[pr.b]));
  }
  void repair_forbidden();
  void undo(const std::vector<Change>& changes);
  void greedy_init();
  bool repair_memory(bool whole_chains);
  std::vector<int32_t> min_usage_solution() const;
  bool improve_node(int i, bool memory_aware);
  bool improve_pair(int32_t pair_index);
  void local_search(bool memory_aware);
  bool pair_pass(const std::vector<int32_t>& pairs);
  void push(int i) {
    if (!queued_[i]) {
      queued_[i] = 1;
      queue_.push_back(i);
    }
  }
  void push_neighbours(int i) {
    for (int64_t k = graph_.adj_offset[i]; k < graph_.adj_offset[i + 1]; ++k) push(graph_.adj[k].other);
  }
  void perturb();

  const StrategyProblem& p_;
  PairGraph graph_;
  MemoryProfile profile_;
  HeuristicOptions options_;
  std::mt19937_64 rng_;
  Clock::time_point start_;
  int64_t limit_;
  std::vector<int32_t> sol_;
  std::vector<double> scratch_, scratch2_;
  std::vector<int32_t> queue_;
  std::vector<char> queued_;
  std::vector<Change> journal_;
  bool journal_on_ = false;
  std::vector<char> alive_;                   // flat: strategy survives presolve (finite, fits, supported)
  std::vector<std::vector<int32_t>> domain_;  // alive strategies per node
  int dead_node_ = -1;                        // a node left with no alive strategy, if any
  std::vector<int32_t> all_pairs_, touched_pairs_;
  std::vector<Change> cascade_changes_;
};

bool Search::propagate() {
  // Arc consistency on the forbidden (>= 1e18) costs: a strategy with no finite-cost partner among a
  // neighbour's alive strategies can never be part of a finite-cost solution. Removing them up front turns
  // most hard constraints of the production problems into smaller domains, so that greedy and local search
  // stop walking into forbidden combinations.
  const int n = p_.num_nodes();
  alive_.assign(p_.node_cost.size(), 0);
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < p_.num_strategies(i); ++s) {
      const int64_t k = p_.strategy_offset[i] + s;
      alive_[k] =
          !is_forbidden(graph_.unary[k]) && (profile_.lo(i) >= profile_.hi(i) || usage(i, s) <= limit_);
    }
  }
  std::vector<int32_t> work;
  std::vector<char> in_work(graph_.pairs.size(), 1);
  for (int32_t k = static_cast<int32_t>(graph_.pairs.size()) - 1; k >= 0; --k) work.push_back(k);
  auto revise = [&](const PairGraph::Pair& pr, bool side_a) {  // kill unsupported strategies of one side
    const int x_node = side_a ? pr.a : pr.b, y_node = side_a ? pr.b : pr.a;
    const int64_t xo = p_.strategy_offset[x_node], yo = p_.strategy_offset[y_node];
    bool changed = false;
    for (int x = 0; x < p_.num_strategies(x_node); ++x) {
      if (!alive_[xo + x]) continue;
      bool supported = false;
      for (int y = 0; y < p_.num_strategies(y_node) && !supported; ++y) {
        supported =
            alive_[yo + y] && !is_forbidden(side_a ? graph_.pair_cost(pr, x, y) : graph_.pair_cost(pr, y, x));
      }
      if (!supported) {
        alive_[xo + x] = 0;
        changed = true;
      }
    }
    return changed;
  };
  while (!work.empty()) {
    const int32_t k = work.back();
    work.pop_back();
    in_work[k] = 0;
    const auto& pr = graph_.pairs[k];
    for (int side = 0; side < 2; ++side) {
      if (!revise(pr, side == 0)) continue;
      const int node = side == 0 ? pr.a : pr.b;
      for (int64_t a = graph_.adj_offset[node]; a < graph_.adj_offset[node + 1]; ++a) {
        const int32_t q = graph_.adj[a].pair;
        if (!in_work[q]) {
          in_work[q] = 1;
          work.push_back(q);
        }
      }
    }
  }
  domain_.assign(n, {});
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < p_.num_strategies(i); ++s) {
      if (alive_[p_.strategy_offset[i] + s]) domain_[i].push_back(s);
    }
    if (domain_[i].empty()) {  // no finite-cost solution exists; keep searching over every strategy anyway
      if (dead_node_ < 0) dead_node_ = i;
      for (int s = 0; s < p_.num_strategies(i); ++s) {
        alive_[p_.strategy_offset[i] + s] = 1;
        domain_[i].push_back(s);
      }
    }
  }
  all_pairs_.resize(graph_.pairs.size());
  for (size_t k = 0; k < all_pairs_.size(); ++k) all_pairs_[k] = static_cast<int32_t>(k);
  return dead_node_ < 0;
}

void Search::greedy_init() {
  // Nodes in index order (producers before consumers in the contest graphs and in autopar's own). Each picks
  // its cheapest alive strategy given its placed neighbours, counting an unplaced neighbour at its best case
  // (min over its current domain); then forward checking narrows the unplaced neighbours' domains to the
  // strategies compatible with the choice (finite pair cost), so later nodes avoid forbidden combinations.
  const int n = p_.num_nodes();
  std::vector<char> placed(n, 0);
  std::vector<char> live = alive_;  // dynamic domains
  std::vector<int32_t> narrowed;
  for (int i = 0; i < n; ++i) {
    const int64_t off = p_.strategy_offset[i];
    double* local = scratch_.data();
    int best = -1;
    for (int pass = 0; pass < 2 && best < 0; ++pass) {  // pass 1: domain wiped out; fall back to alive_
      for (int32_t s : domain_[i]) {
        if (pass == 0 && !live[off + s]) continue;
        double v = graph_.unary[off + s];
        for (int64_t k = graph_.adj_offset[i]; k < graph_.adj_offset[i + 1]; ++k) {
          const auto& inc = graph_.adj[k];
          const auto& pr = graph_.pairs[inc.pair];
          const int j = inc.other;
          if (placed[j]) {
            v += inc.is_a ? graph_.pair_cost(pr, s, sol_[j]) : graph_.pair_cost(pr, sol_[j], s);
            continue;
          }
          double m = std::numeric_limits<double>::infinity();
          for (int32_t t : domain_[j]) {
            if (!live[p_.strategy_offset[j] + t]) continue;
            m = std::min(m, inc.is_a ? graph_.pair_cost(pr, s, t) : graph_.pair_cost(pr, t, s));
          }
          v += std::isinf(m) ? kInfiniteCost : m;
        }
        if (best < 0 || v < local[0]) {
          best = s;
          local[0] = v;
        }
      }
    }
    sol_[i] = best;
    placed[i] = 1;
    for (int64_t k = graph_.adj_offset[i]; k < graph_.adj_offset[i + 1]; ++k) {
      const auto& inc = graph_.adj[k];
      const int j = inc.other;
      if (placed[j]) continue;
      const auto& pr = graph_.pairs[inc.pair];
      narrowed.clear();
      bool any = false;
      for (int32_t t : domain_[j]) {
        const int64_t kt = p_.strategy_offset[j] + t;
        if (!live[kt]) continue;
        if (is_forbidden(inc.is_a ? graph_.pair_cost(pr, best, t) : graph_.pair_cost(pr, t, best))) {
          narrowed.push_back(t);
        } else {
          any = true;
        }
      }
      if (any) {  // never empty a domain: a dead end is left for local search to fix
        for (int32_t t : narrowed) live[p_.strategy_offset[j] + t] = 0;
      }
    }
  }
  profile_.reset(sol_);
}

std::vector<int32_t> Search::min_usage_solution() const {
  std::vector<int32_t> s(p_.num_nodes(), 0);
  for (int i = 0; i < p_.num_nodes(); ++i) {
    int best = domain_[i][0];
    for (int32_t k : domain_[i]) {
      if (usage(i, k) < usage(i, best) ||
          (usage(i, k) == usage(i, best) &&
           graph_.unary[p_.strategy_offset[i] + k] < graph_.unary[p_.strategy_offset[i] + best])) {
        best = k;
      }
    }
    s[i] = best;
  }
  return s;
}

bool Search::improve_node(int i, bool memory_aware) {
  const auto& dom = domain_[i];
  if (dom.size() <= 1 && dom[0] == sol_[i]) return false;
  double* local = scratch_.data();
  graph_.local_costs(i, sol_.data(), local);
  const int cur = sol_[i];
  const double threshold = local[cur] - kRelativeGain * std::max(1.0, std::fabs(local[cur]));
  const int64_t max_over = memory_aware ? profile_.max_over(i) : 0;
  int best = cur;
  double best_value = threshold;
  for (int32_t s : dom) {
    if (local[s] < best_value && (!memory_aware || fits(i, s, max_over))) {
      best = s;
      best_value = local[s];
    }
  }
  if (best == cur) return false;
  apply(i, best);
  return true;
}

bool Search::improve_pair(int32_t pair_index) {
  const auto& pr = graph_.pairs[pair_index];
  const int a = pr.a, b = pr.b;
  const auto& da_list = domain_[a];
  const auto& db_list = domain_[b];
  if (da_list.size() * db_list.size() > static_cast<size_t>(kMaxPairTable) ||
      da_list.size() * db_list.size() <= 1) {
    return false;
  }
  // Local costs of a and b without this pair's table, then the joint best over the table.
  double* la = scratch_.data();
  double* lb = scratch2_.data();
  graph_.local_costs(a, sol_.data(), la);
  graph_.local_costs(b, sol_.data(), lb);
  const int ca = sol_[a], cb = sol_[b];
  for (int s = 0; s < p_.num_strategies(a); ++s) la[s] -= graph_.pair_cost(pr, s, cb);
  for (int s = 0; s < p_.num_strategies(b); ++s) lb[s] -= graph_.pair_cost(pr, ca, s);
  const double current = la[ca] + lb[cb] + graph_.pair_cost(pr, ca, cb);
  const double threshold = current - kRelativeGain * std::max(1.0, std::fabs(current));
  struct Candidate {
    double value;
    int x, y;
  };
  Candidate cands[8];
  int count = 0;
  for (int32_t x : da_list) {
    if (is_forbidden(la[x])) continue;
    for (int32_t y : db_list) {
      const double v = la[x] + lb[y] + graph_.pair_cost(pr, x, y);
      if (!(v < threshold) || (x == ca && y == cb)) continue;
      if (count == 8 && v >= cands[7].value) continue;  // keep the 8 best, sorted
      int pos = std::min(count, 7);
      while (pos > 0 && cands[pos - 1].value > v) {
        cands[pos] = cands[pos - 1];
        --pos;
      }
      cands[pos] = {v, x, y};
      count = std::min(count + 1, 8);
    }
  }
  for (int k = 0; k < count; ++k) {
    const int x = cands[k].x, y = cands[k].y;
    const int64_t da = usage(a, x) - usage(a, ca), db = usage(b, y) - usage(b, cb);
    apply(a, x);
    apply(b, y);
    if ((da <= 0 && db <= 0) || (profile_.max_over(a) <= limit_ && profile_.max_over(b) <= limit_))
      return true;
    apply(b, cb);
    apply(a, ca);
    if (journal_on_) journal_.resize(journal_.size() - 4);
  }
  return false;
}

void Search::local_search(bool memory_aware) {
  // Worklist of single-node moves; a node that changes re-queues its neighbours.
  while (!queue_.empty()) {
    const int i = queue_.back();
    queue_.pop_back();
    queued_[i] = 0;
    if (improve_node(i, memory_aware)) push_neighbours(i);
  }
}

bool Search::pair_pass(const std::vector<int32_t>& pairs) {
  bool any = false;
  for (int32_t k : pairs) {
    if (improve_pair(k)) {
      any = true;
      push_neighbours(graph_.pairs[k].a);
      push_neighbours(graph_.pairs[k].b);
      local_search(true);
    }
    if ((k & 63) == 0 && out_of_time()) break;
  }
  return any;
}

bool Search::cascade(int i, int s, double* delta, std::vector<Change>* changes, size_t max_size) {
  // Moves i to s, then every neighbour left on a forbidden pair moves to its cheapest strategy compatible
  // with the nodes already moved, and so on outwards (the "follow chains" of the production graphs: a layout
  // that must propagate along a chain of ops moves as one). Fails (and undoes) past kMaxCascade nodes or when
  // some neighbour has no compatible strategy. *delta is the exact cost change.
  changes->clear();
  *delta = 0;
  double* local = scratch2_.data();
  auto move = [&](int x, int t) {
    graph_.local_costs(x, sol_.data(), local);
    *delta += local[t] - local[sol_[x]];
    changes->push_back({x, sol_[x]});
    apply(x, t);
  };
  move(i, s);
  for (size_t head = 0; head < changes->size(); ++head) {
    const int x = (*changes)[head].node;
    for (int64_t k = graph_.adj_offset[x]; k < graph_.adj_offset[x + 1]; ++k) {
      const auto& inc = graph_.adj[k];
      const auto& pr = graph_.pairs[inc.pair];
      const int y = inc.other;
      auto cost_xy = [&](int ty) {
        return inc.is_a ? graph_.pair_cost(pr, sol_[x], ty) : graph_.pair_cost(pr, ty, sol_[x]);
      };
      if (!is_forbidden(cost_xy(sol_[y]))) continue;
      if (changes->size() >= max_size) {
        undo(*changes);
        return false;
      }
      graph_.local_costs(y, sol_.data(), local);
      int best = -1;
      for (int32_t t : domain_[y]) {
        if (!is_forbidden(cost_xy(t)) && (best < 0 || local[t] < local[best])) best = t;
      }
      if (best < 0) {
        undo(*changes);
        return false;
      }
      move(y, best);
    }
  }
  return true;
}

void Search::undo(const std::vector<Change>& changes) {
  for (auto it = changes.rbegin(); it != changes.rend(); ++it) apply(it->node, it->old_strategy);
  if (journal_on_) journal_.resize(journal_.size() - 2 * changes.size());
}

void Search::repair_forbidden() {
  // The greedy start can leave forbidden pairs that no single-node move fixes: both ends sit on follow chains
  // whose other pairs forbid every alternative. For each forbidden pair, every strategy of either end that is
  // compatible with the other end is tried as a cascade (the whole chain moves); a successful cascade leaves
  // every pair it touches finite, so the count of forbidden pairs falls. The cheapest is applied. Passes
  // repeat while they fix something.
  std::vector<Change> changes;
  const size_t levels[2] = {kMaxCascade, repair_cascade_limit()};
  bool progress = true;
  while (progress && !out_of_time()) {
    progress = false;
    for (size_t k = 0; k < graph_.pairs.size(); ++k) {
      const auto& pr = graph_.pairs[k];
      if (!is_forbidden_pair(pr)) continue;
      if (out_of_time()) return;  // whole-chain cascades are slow: check per repaired pair
      int best_node = -1, best_strategy = -1;
      size_t limit = levels[0];
      double best_delta = std::numeric_limits<double>::infinity();
      for (size_t level : levels) {  // capped cascades first; whole chains only when none of those works
        if (best_node >= 0) break;
        limit = level;
        for (int side = 0; side < 2; ++side) {
          const int x = side == 0 ? pr.a : pr.b;
          const int other = side == 0 ? sol_[pr.b] : sol_[pr.a];
          const int cur = sol_[x];
          for (int32_t t : domain_[x]) {
            if (t == cur) continue;
            if (is_forbidden(side == 0 ? graph_.pair_cost(pr, t, other) : graph_.pair_cost(pr, other, t)))
              continue;
            double delta;
            if (!cascade(x, t, &delta, &changes, limit)) continue;
            if (delta < best_delta) {
              best_delta = delta;
              best_node = x;
              best_strategy = t;
            }
            undo(changes);
          }
        }
      }
      if (best_node < 0) continue;
      double delta;
      if (cascade(best_node, best_strategy, &delta, &changes, limit)) {
        progress = true;
        for (const Change& c : changes) push(c.node);
      }
    }
  }
}

bool Search::repair_memory(bool whole_chains) {
  // At the peak moment t, among live nodes and their smaller strategies, apply the cascade move with the
  // least cost increase per byte saved at t; repeat until the peak fits. Moves that save nothing at t are
  // never applied, so usage at t strictly falls and the loop ends. Cascades are capped at kMaxCascade; with
  // `whole_chains`, when no capped move saves anything at t, cascades up to repair_cascade_limit() (whole
  // follow chains) are tried.
  const int n = p_.num_nodes();
  std::vector<Change> changes;
  std::vector<int> live_nodes;
  struct Move {
    double ratio;
    int node, strategy;
  };
  std::vector<Move> moves;
  const size_t levels[2] = {kMaxCascade, whole_chains ? repair_cascade_limit() : kMaxCascade};
  while (profile_.peak() > limit_) {
    if (out_of_time()) return false;
    const int t = profile_.argmax_point();
    const int64_t before = profile_.usage_at(t);
    live_nodes.clear();
    for (int i = 0; i < n; ++i) {
      if (profile_.lo(i) <= t && t < profile_.hi(i) && domain_[i].size() > 1) live_nodes.push_back(i);
    }
    bool applied = false;
    for (size_t max_size : levels) {
      if (applied || (max_size == levels[1] && levels[1] == levels[0])) break;
      moves.clear();
      for (int i : live_nodes) {
        // Whole-chain cascades cost up to a chain each (L: 1,516 nodes): one pass over the live nodes
        // took seconds, so the clock is checked per node.
        if (out_of_time()) return false;
        // The few smallest strategies of i, each priced as a cascade.
        std::vector<int32_t> cands;
        for (int32_t s : domain_[i]) {
          if (usage(i, s) < usage(i, sol_[i])) cands.push_back(s);
        }
        std::sort(cands.begin(), cands.end(),
                  [&](int32_t x, int32_t y) { return usage(i, x) < usage(i, y); });
        if (cands.size() > 3) cands.resize(3);
        Move best{std::numeric_limits<double>::infinity(), -1, -1};
        for (int32_t s : cands) {
          double delta;
          if (!cascade(i, s, &delta, &changes, max_size)) continue;
          const int64_t saved = before - profile_.usage_at(t);
          if (saved > 0 && !is_forbidden(delta) && delta / static_cast<double>(saved) < best.ratio) {
            best = {delta / static_cast<double>(saved), i, s};
          }
          undo(changes);
        }
        if (best.node >= 0) moves.push_back(best);
      }
      // Apply in order of price until t fits; each is re-checked (earlier moves may have changed its
      // cascade).
      std::sort(moves.begin(), moves.end(), [](const Move& x, const Move& y) {
        return x.ratio < y.ratio || (x.ratio == y.ratio && x.node < y.node);
      });
      for (const Move& m : moves) {
        if (usage(m.node, m.strategy) >= usage(m.node, sol_[m.node])) continue;
        const int64_t at_t = profile_.usage_at(t);
        double delta;
        if (!cascade(m.node, m.strategy, &delta, &changes, max_size)) continue;
        if (profile_.usage_at(t) >= at_t || is_forbidden(delta)) {
          undo(changes);
          continue;
        }
        applied = true;
        if (profile_.usage_at(t) <= limit_) break;
      }
    }
    if (!applied) return false;
  }
  return true;
}

void Search::perturb() {
  // Pick a random node and a few nodes around it (breadth-first), give each a random alive strategy that fits
  // in memory; local search then re-optimises around them.
  const int n = p_.num_nodes();
  const int root = static_cast<int>(rng_() % n);
  const int size = 1 + static_cast<int>(rng_() % 8);
  std::vector<int> region{root};
  for (size_t k = 0; k < region.size() && static_cast<int>(region.size()) < size; ++k) {
    const int i = region[k];
    for (int64_t a = graph_.adj_offset[i];
         a < graph_.adj_offset[i + 1] && static_cast<int>(region.size()) < size; ++a) {
      const int j = graph_.adj[a].other;
      if (std::find(region.begin(), region.end(), j) == region.end()) region.push_back(j);
    }
  }
  for (int i : region) {
    const auto& dom = domain_[i];
    if (dom.size() == 1) continue;
    const int s = dom[rng_() % dom.size()];
    double delta;
    if (!cascade(i, s, &delta, &cascade_changes_)) continue;
    bool fits_all = true;
    for (const Change& c : cascade_changes_) fits_all = fits_all && profile_.max_over(c.node) <= limit_;
    if (!fits_all) {
      undo(cascade_changes_);
      continue;
    }
    for (const Change& c : cascade_changes_) {
      push(c.node);
      push_neighbours(c.node);
    }
  }
}

HeuristicResult Search::run(std::span<const int32_t> initial) {
  HeuristicResult result;
  propagate();
  const std::vector<int32_t> min_usage = min_usage_solution();
  set_solution(min_usage);
  result.min_peak_usage = profile_.peak();
  const bool hopeless = p_.has_usage_limit() && result.min_peak_usage > p_.usage_limit;

  bool feasible_start = false;
  if (!initial.empty()) {
    // An initial solution over the limit (e.g. from a memory-priced search) is repaired where it stands:
    // its choices elsewhere are what the caller wants kept. The greedy start below is the fallback.
    set_solution(initial);
    // Whole follow chains may move: a capped repair that stalls would drop the caller's choices for the
    // greedy start (on L every toulbar2 priced optimum did, so no priced solution was ever repaired).
    feasible_start = profile_.peak() <= limit_ || (!hopeless && repair_memory(/*whole_chains=*/true));
  }
  if (!feasible_start && !hopeless) {
    greedy_init();
    for (int i = 0; i < p_.num_nodes(); ++i) push(i);
    local_search(/*memory_aware=*/false);
    repair_forbidden();
    local_search(/*memory_aware=*/false);
    feasible_start = repair_memory(/*whole_chains=*/false);
    if (!feasible_start) {
      // The minimum-usage solution fits whenever anything does, and local search usually clears its
      // forbidden pairs. Where follow chains forbid each node's smallest strategy taken alone (L: 5,584
      // forbidden pairs, 14 left after local search and pair moves), the repair instead goes on from where it
      // stopped, moving whole chains.
      const std::vector<int32_t> stalled = sol_;
      set_solution(min_usage);
      for (int i = 0; i < p_.num_nodes(); ++i) push(i);
      local_search(/*memory_aware=*/true);
      pair_pass(all_pairs_);
      if (is_forbidden(exact_cost())) {  // local search left forbidden pairs
        set_solution(stalled);
        if (!repair_memory(/*whole_chains=*/true)) set_solution(min_usage);
      }
    }
  }
  if (hopeless) {
    // Report how far off the limit is with the limit lifted: the usage cut above empties domains when the
    // limit is far too low (every node then falls back to all its strategies, forbidden ones included),
    // and its figure then depends on the limit. Without the cut, the minimum-usage solution over the
    // domains that forbidden pairs leave peaks at a lower bound on every finite-cost solution's peak, and
    // when its own cost is finite that peak is the smallest one any solution can have.
    limit_ = std::numeric_limits<int64_t>::max() / 4;
    dead_node_ = -1;
    propagate();
    const std::vector<int32_t> lowest = min_usage_solution();
    result.solution = lowest;
    const Evaluation ev = evaluate(p_, std::vector<int64_t>(lowest.begin(), lowest.end()));
    result.cost = ev.cost;
    result.peak_usage = ev.peak_usage;
    result.feasible = false;
    return result;
  }
  for (int i = 0; i < p_.num_nodes(); ++i) push(i);
  local_search(/*memory_aware=*/true);
  double best_cost = exact_cost();
  if (!is_forbidden(best_cost)) result.time_to_first_feasible = elapsed();
  pair_pass(all_pairs_);  // one full pass; the perturbation rounds revisit pairs where things move
  std::vector<int32_t> best = sol_;
  best_cost = exact_cost();
  result.time_to_best = elapsed();
  if (result.time_to_first_feasible < 0 && !is_forbidden(best_cost))
    result.time_to_first_feasible = elapsed();

  // Iterated perturbation: keep a change if it does not make the solution worse, undo it otherwise.
  journal_on_ = true;
  std::vector<char> pair_mark(graph_.pairs.size(), 0);
  while (!out_of_time() && (options_.max_rounds < 0 || result.rounds < options_.max_rounds)) {
    ++result.rounds;
    journal_.clear();
    perturb();
    local_search(/*memory_aware=*/true);
    touched_pairs_.clear();  // pair moves around everything that moved
    for (size_t c = 0; c < journal_.size(); ++c) {
      const int i = journal_[c].node;
      for (int64_t k = graph_.adj_offset[i]; k < graph_.adj_offset[i + 1]; ++k) {
        const int32_t q = graph_.adj[k].pair;
        if (!pair_mark[q]) {
          pair_mark[q] = 1;
          touched_pairs_.push_back(q);
        }
      }
    }
    for (int32_t q : touched_pairs_) pair_mark[q] = 0;
    pair_pass(touched_pairs_);
    const double cost = exact_cost();
    if (cost <= best_cost) {
      if (cost < best_cost) {
        result.time_to_best = elapsed();
        if (result.time_to_first_feasible < 0 && !is_forbidden(cost))
          result.time_to_first_feasible = elapsed();
      }
      best_cost = cost;
      for (const Change& c : journal_) best[c.node] = sol_[c.node];
    } else {
      for (auto it = journal_.rbegin(); it != journal_.rend(); ++it) {
        profile_.add(it->node, usage(it->node, it->old_strategy) - usage(it->node, sol_[it->node]));
        sol_[it->node] = it->old_strategy;
      }
    }
  }
  journal_on_ = false;
  result.solution = best;
  const Evaluation ev = evaluate(p_, std::vector<int64_t>(best.begin(), best.end()));
  result.cost = ev.cost;
  result.peak_usage = ev.peak_usage;
  result.feasible = ev.feasible;
  if (!ev.feasible) result.time_to_first_feasible = -1;
  return result;
}

}  // namespace

HeuristicResult solve_heuristic(const StrategyProblem& problem, const HeuristicOptions& options,
                                std::span<const int32_t> initial) {
  if (!initial.empty() && initial.size() != static_cast<size_t>(problem.num_nodes())) {
    throw std::invalid_argument("initial solution has " + std::to_string(initial.size()) +
                                " entries, expected " + std::to_string(problem.num_nodes()));
  }
  for (size_t i = 0; i < initial.size(); ++i) {
    if (initial[i] < 0 || initial[i] >= problem.num_strategies(static_cast<int>(i))) {
      throw std::invalid_argument("initial solution: node " + std::to_string(i) + " picks strategy " +
                                  std::to_string(initial[i]) + " out of range");
    }
  }
  if (problem.num_nodes() == 0) return HeuristicResult{{}, 0, 0, true, 0, 0, 0, 0};
  Search search(problem, options);
  return search.run(initial);
}

}  // namespace autopar::solver

#include "passes/solver/heuristic.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

#include "passes/solver/memory_profile.h"
#include "passes/solver/pair_graph.h"

namespace autopar::solver {
namespace {

using Clock = std::chrono::steady_clock;

// A move must gain more than this (relative) to count: stops cycling on floating-point noise.
constexpr double kRelativeGain = 1e-12;
constexpr int kMaxPairTable = 4096;  // edge-pair moves skip larger tables (too slow to scan per move)

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
  bool allowed(int i, int s) const { return !is_forbidden(graph_.unary[p_.strategy_offset[i] + s]); }

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

  void greedy_init();
  bool repair_memory();
  std::vector<int32_t> min_usage_solution() const;
  bool improve_node(int i, bool memory_aware);
  bool improve_pair(int32_t pair_index);
  void local_search(bool memory_aware);
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
  struct Change {
    int node, old_strategy;
  };
  std::vector<Change> journal_;
  bool journal_on_ = false;
};

void Search::greedy_init() {
  // Nodes in index order (the contest graphs and autopar's own come in producer-before-consumer order); a
  // not-yet-placed neighbour contributes its best case, min over its strategies, so early choices are not
  // blind to their consumers.
  const int n = p_.num_nodes();
  std::vector<char> placed(n, 0);
  for (int i = 0; i < n; ++i) {
    const int s_count = p_.num_strategies(i);
    double* local = scratch_.data();
    std::copy_n(graph_.unary.data() + p_.strategy_offset[i], s_count, local);
    for (int64_t k = graph_.adj_offset[i]; k < graph_.adj_offset[i + 1]; ++k) {
      const auto& inc = graph_.adj[k];
      const auto& pr = graph_.pairs[inc.pair];
      const int so = p_.num_strategies(inc.other);
      for (int s = 0; s < s_count; ++s) {
        double best = std::numeric_limits<double>::infinity();
        if (placed[inc.other]) {
          best = inc.is_a ? graph_.pair_cost(pr, s, sol_[inc.other]) : graph_.pair_cost(pr, sol_[inc.other], s);
        } else {
          for (int t = 0; t < so; ++t) best = std::min(best, inc.is_a ? graph_.pair_cost(pr, s, t) : graph_.pair_cost(pr, t, s));
        }
        local[s] += best;
      }
    }
    sol_[i] = static_cast<int32_t>(std::min_element(local, local + s_count) - local);
    placed[i] = 1;
  }
  profile_.reset(sol_);
}

std::vector<int32_t> Search::min_usage_solution() const {
  std::vector<int32_t> s(p_.num_nodes(), 0);
  for (int i = 0; i < p_.num_nodes(); ++i) {
    int best = -1;
    for (int k = 0; k < p_.num_strategies(i); ++k) {
      if (!allowed(i, k)) continue;
      if (best < 0 || usage(i, k) < usage(i, best) ||
          (usage(i, k) == usage(i, best) && graph_.unary[p_.strategy_offset[i] + k] <
                                                graph_.unary[p_.strategy_offset[i] + best])) {
        best = k;
      }
    }
    if (best < 0) {  // every strategy forbidden: the problem has no finite-cost solution; minimise usage anyway
      best = 0;
      for (int k = 1; k < p_.num_strategies(i); ++k) {
        if (usage(i, k) < usage(i, best)) best = k;
      }
    }
    s[i] = best;
  }
  return s;
}

bool Search::improve_node(int i, bool memory_aware) {
  const int s_count = p_.num_strategies(i);
  if (s_count == 1) return false;
  double* local = scratch_.data();
  graph_.local_costs(i, sol_.data(), local);
  const int cur = sol_[i];
  const double threshold = local[cur] - kRelativeGain * std::max(1.0, std::fabs(local[cur]));
  const int64_t max_over = memory_aware ? profile_.max_over(i) : 0;
  int best = cur;
  double best_value = threshold;
  for (int s = 0; s < s_count; ++s) {
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
  const int sa = p_.num_strategies(a), sb = p_.num_strategies(b);
  if (static_cast<int64_t>(sa) * sb > kMaxPairTable) return false;
  // Local costs of a and b without this pair's table, then the joint best over the table.
  double* la = scratch_.data();
  double* lb = scratch2_.data();
  graph_.local_costs(a, sol_.data(), la);
  graph_.local_costs(b, sol_.data(), lb);
  const int ca = sol_[a], cb = sol_[b];
  for (int s = 0; s < sa; ++s) la[s] -= graph_.pair_cost(pr, s, cb);
  for (int s = 0; s < sb; ++s) lb[s] -= graph_.pair_cost(pr, ca, s);
  const double current = la[ca] + lb[cb] + graph_.pair_cost(pr, ca, cb);
  const double threshold = current - kRelativeGain * std::max(1.0, std::fabs(current));
  struct Candidate {
    double value;
    int x, y;
  };
  Candidate cands[8];
  int count = 0;
  for (int x = 0; x < sa; ++x) {
    if (is_forbidden(la[x])) continue;
    for (int y = 0; y < sb; ++y) {
      const double v = la[x] + lb[y] + graph_.pair_cost(pr, x, y);
      if (!(v < threshold) || (x == ca && y == cb)) continue;
      // Keep the 8 best (insertion into a small sorted array).
      if (count == 8 && v >= cands[7].value) continue;
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
    if ((da <= 0 && db <= 0) || (profile_.max_over(a) <= limit_ && profile_.max_over(b) <= limit_)) return true;
    apply(b, cb);
    apply(a, ca);
    if (journal_on_) journal_.resize(journal_.size() - 4);
  }
  return false;
}

void Search::local_search(bool memory_aware) {
  // Worklist of single-node moves; a node that changes re-queues its neighbours. Then one pass of pair moves;
  // repeat while pairs find something.
  while (true) {
    while (!queue_.empty()) {
      const int i = queue_.back();
      queue_.pop_back();
      queued_[i] = 0;
      if (improve_node(i, memory_aware)) push_neighbours(i);
    }
    if (!memory_aware) return;
    bool any = false;
    for (int32_t k = 0; k < static_cast<int32_t>(graph_.pairs.size()); ++k) {
      if (improve_pair(k)) {
        any = true;
        push_neighbours(graph_.pairs[k].a);
        push_neighbours(graph_.pairs[k].b);
      }
    }
    if (!any || out_of_time()) return;
  }
}

bool Search::repair_memory() {
  // At the peak moment, switch live nodes to smaller strategies, cheapest cost increase per byte saved first,
  // until that moment fits; repeat at the new peak.
  const int n = p_.num_nodes();
  std::vector<std::pair<double, int>> moves;
  while (profile_.peak() > limit_) {
    if (out_of_time()) return false;
    const int t = profile_.argmax_point();
    moves.clear();
    for (int i = 0; i < n; ++i) {
      if (profile_.lo(i) > t || profile_.hi(i) <= t) continue;
      double* local = scratch_.data();
      graph_.local_costs(i, sol_.data(), local);
      const int cur = sol_[i];
      double best_ratio = std::numeric_limits<double>::infinity();
      for (int s = 0; s < p_.num_strategies(i); ++s) {
        const int64_t saved = usage(i, cur) - usage(i, s);
        if (saved <= 0 || !allowed(i, s)) continue;
        best_ratio = std::min(best_ratio, (local[s] - local[cur]) / static_cast<double>(saved));
      }
      if (best_ratio < std::numeric_limits<double>::infinity()) moves.push_back({best_ratio, i});
    }
    if (moves.empty()) return false;
    std::sort(moves.begin(), moves.end());
    for (const auto& [ratio, i] : moves) {
      // Re-price against the current neighbours (earlier moves in this round may have changed them).
      double* local = scratch_.data();
      graph_.local_costs(i, sol_.data(), local);
      const int cur = sol_[i];
      int best = -1;
      double best_ratio = std::numeric_limits<double>::infinity();
      for (int s = 0; s < p_.num_strategies(i); ++s) {
        const int64_t saved = usage(i, cur) - usage(i, s);
        if (saved <= 0 || !allowed(i, s)) continue;
        const double r = (local[s] - local[cur]) / static_cast<double>(saved);
        if (r < best_ratio) {
          best_ratio = r;
          best = s;
        }
      }
      if (best >= 0) apply(i, best);
      if (profile_.usage_at(t) <= limit_) break;
    }
    // Every round applies at least one usage-reducing move, so the loop ends.
  }
  return true;
}

void Search::perturb() {
  // Pick a random node and a few nodes around it (breadth-first), give each a random allowed strategy that
  // fits in memory; local search then re-optimises around them.
  const int n = p_.num_nodes();
  const int root = static_cast<int>(rng_() % n);
  const int size = 1 + static_cast<int>(rng_() % 8);
  std::vector<int> region{root};
  for (size_t k = 0; k < region.size() && static_cast<int>(region.size()) < size; ++k) {
    const int i = region[k];
    for (int64_t a = graph_.adj_offset[i]; a < graph_.adj_offset[i + 1] && static_cast<int>(region.size()) < size;
         ++a) {
      const int j = graph_.adj[a].other;
      if (std::find(region.begin(), region.end(), j) == region.end()) region.push_back(j);
    }
  }
  for (int i : region) {
    const int s_count = p_.num_strategies(i);
    if (s_count == 1) continue;
    const int s = static_cast<int>(rng_() % s_count);
    if (!allowed(i, s) || !fits(i, s, profile_.max_over(i))) continue;
    apply(i, s);
    push(i);
    push_neighbours(i);
  }
}

HeuristicResult Search::run(std::span<const int32_t> initial) {
  HeuristicResult result;
  const std::vector<int32_t> min_usage = min_usage_solution();
  set_solution(min_usage);
  result.min_peak_usage = profile_.peak();
  const bool hopeless = p_.has_usage_limit() && result.min_peak_usage > p_.usage_limit;

  bool feasible_start = false;
  if (!initial.empty()) {
    set_solution(initial);
    feasible_start = profile_.peak() <= limit_;
  }
  if (!feasible_start && !hopeless) {
    greedy_init();
    for (int i = 0; i < p_.num_nodes(); ++i) push(i);
    local_search(/*memory_aware=*/false);
    feasible_start = repair_memory();
    if (!feasible_start) {
      set_solution(min_usage);
      feasible_start = true;
    }
  }
  if (hopeless) {  // report the minimum-usage solution: the best evidence of how far off the limit is
    result.solution = min_usage;
    const Evaluation ev = evaluate(p_, std::vector<int64_t>(min_usage.begin(), min_usage.end()));
    result.cost = ev.cost;
    result.peak_usage = ev.peak_usage;
    result.feasible = false;
    return result;
  }
  for (int i = 0; i < p_.num_nodes(); ++i) push(i);
  local_search(/*memory_aware=*/true);
  std::vector<int32_t> best = sol_;
  double best_cost = exact_cost();
  result.time_to_best = elapsed();
  if (!is_forbidden(best_cost)) result.time_to_first_feasible = result.time_to_best;

  // Iterated perturbation: keep a change if it does not make the solution worse, undo it otherwise.
  journal_on_ = true;
  while (!out_of_time() && (options_.max_rounds < 0 || result.rounds < options_.max_rounds)) {
    ++result.rounds;
    journal_.clear();
    perturb();
    local_search(/*memory_aware=*/true);
    const double cost = exact_cost();
    if (cost <= best_cost) {
      if (cost < best_cost) {
        result.time_to_best = elapsed();
        if (result.time_to_first_feasible < 0 && !is_forbidden(cost)) result.time_to_first_feasible = elapsed();
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
    throw std::invalid_argument("initial solution has " + std::to_string(initial.size()) + " entries, expected " +
                                std::to_string(problem.num_nodes()));
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

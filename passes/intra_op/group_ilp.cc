#include "passes/intra_op/group_ilp.h"

#include <algorithm>
#include <limits>
#include <set>
#include <unordered_map>

namespace autopar::solver {
namespace {

GroupIlp too_big_model() {
  GroupIlp m;
  m.too_big = true;
  return m;
}

}  // namespace

GroupModel::GroupModel(const StrategyProblem& problem, Presolved presolved)
    : p_(problem), r_(std::move(presolved)), profile_(problem), live_members_(r_.num_groups()) {
  for (int g = 0; g < r_.num_groups(); ++g) {
    for (int32_t k = 0; k < static_cast<int32_t>(r_.members[g].size()); ++k) {
      const int node = r_.members[g][k].node;
      if (profile_.lo(node) < profile_.hi(node)) live_members_[g].push_back(k);
    }
  }
  // Groups ordered by their first live moment, for the time jumps of neighbourhood().
  by_time_.clear();
  first_point_.assign(r_.num_groups(), std::numeric_limits<int>::max());
  for (int g = 0; g < r_.num_groups(); ++g) {
    for (int32_t k : live_members_[g])
      first_point_[g] = std::min(first_point_[g], profile_.lo(r_.members[g][k].node));
    if (r_.domain[g].size() > 1) by_time_.push_back(g);
  }
  std::stable_sort(by_time_.begin(), by_time_.end(),
                   [&](int32_t x, int32_t y) { return first_point_[x] < first_point_[y]; });
  time_rank_.assign(r_.num_groups(), -1);
  for (size_t k = 0; k < by_time_.size(); ++k) time_rank_[by_time_[k]] = static_cast<int32_t>(k);
}

void GroupModel::set_memory_price(std::span<const double> node_price) {
  price_.clear();
  if (node_price.empty()) return;
  price_.resize(r_.num_groups());
  for (int g = 0; g < r_.num_groups(); ++g) {
    const size_t d = r_.domain[g].size();
    if (d <= 1) continue;  // a fixed group's price is a constant
    price_[g].assign(d, 0.0);
    for (const auto& member : r_.members[g]) {
      const double price = node_price[member.node];
      if (price == 0) continue;
      for (size_t k = 0; k < d; ++k) {
        price_[g][k] += price * static_cast<double>(p_.usage_of(member.node, member.strategy[k]));
      }
    }
  }
}

std::vector<double> GroupModel::priced_unary(int g) const {
  std::vector<double> c(r_.unary[g]);
  if (!price_.empty() && !price_[g].empty()) {
    for (size_t k = 0; k < c.size(); ++k) {
      if (!is_forbidden(c[k])) c[k] += price_[g][k];
    }
  }
  return c;
}

GroupIlp GroupModel::build(std::span<const int32_t> assignment, std::span<const int32_t> free_groups,
                           int64_t max_nonzeros, bool lazy_memory, bool memory, int keep) const {
  GroupIlp m;
  const int ng = r_.num_groups();
  std::vector<char> is_free(ng, 0);
  for (int32_t g : free_groups) is_free[g] = r_.domain[g].size() > 1;
  for (int g = 0; g < ng; ++g) {
    if (is_free[g]) m.free_groups.push_back(g);
  }
  // Objective: the fixed part is a constant; pairs to fixed groups are unary costs of the free side.
  for (int g = 0; g < ng; ++g) {
    if (!is_free[g]) m.objective_offset += r_.unary[g][assignment[g]];
  }
  for (const auto& pr : r_.pairs) {
    if (!is_free[pr.a] && !is_free[pr.b])
      m.objective_offset += r_.pair_cost(pr, assignment[pr.a], assignment[pr.b]);
  }
  m.x_offset.resize(m.free_groups.size());
  std::vector<int64_t> offset_of(ng, -1);
  for (size_t f = 0; f < m.free_groups.size(); ++f) {
    const int g = m.free_groups[f];
    m.x_offset[f] = m.num_cols;
    offset_of[g] = m.num_cols;
    const size_t d = r_.domain[g].size();
    std::vector<double> c = priced_unary(g);
    add_neighbour_costs(g, assignment, &is_free, false, c);
    const std::vector<char> allowed =
        keep > 0 ? kept_strategies(g, c, assignment, is_free, keep) : std::vector<char>(d, 1);
    for (size_t k = 0; k < d; ++k) {
      const bool bad = is_forbidden(c[k]) || !allowed[k];
      m.col_cost.push_back(bad ? 0.0 : c[k]);
      m.col_upper.push_back(bad ? 0.0 : 1.0);
      m.col_integer.push_back(1);
      ++m.num_cols;
    }
  }
  auto end_row = [&](double lo, double hi) {
    m.row_lower.push_back(lo);
    m.row_upper.push_back(hi);
    m.row_start.push_back(static_cast<int64_t>(m.row_index.size()));
  };
  for (size_t f = 0; f < m.free_groups.size(); ++f) {
    for (size_t k = 0; k < r_.domain[m.free_groups[f]].size(); ++k) {
      m.row_index.push_back(static_cast<int32_t>(m.x_offset[f] + k));
      m.row_value.push_back(1);
    }
    end_row(1, 1);
  }
  m.y_begin = m.num_cols;
  for (int32_t g : m.free_groups) {
    for (int32_t q : r_.adj[g]) {
      const auto& pr = r_.pairs[q];
      if (pr.a != g || !is_free[pr.b]) continue;  // each free-free pair once, from its a side
      const size_t da = r_.domain[pr.a].size(), db = r_.domain[pr.b].size();
      std::vector<std::vector<int32_t>> by_a(da), by_b(db);
      for (size_t k = 0; k < da; ++k) {
        if (m.col_upper[offset_of[pr.a] + k] == 0) continue;  // x fixed to 0: its y are all 0
        for (size_t l = 0; l < db; ++l) {
          const double c = pr.table[k * db + l];
          if (is_forbidden(c) || m.col_upper[offset_of[pr.b] + l] == 0) continue;
          const int32_t col = static_cast<int32_t>(m.num_cols++);
          m.col_cost.push_back(c);
          m.col_upper.push_back(1);
          m.col_integer.push_back(0);
          m.y_col_a.push_back(static_cast<int32_t>(offset_of[pr.a] + k));
          m.y_col_b.push_back(static_cast<int32_t>(offset_of[pr.b] + l));
          by_a[k].push_back(col);
          by_b[l].push_back(col);
        }
      }
      for (int side = 0; side < 2; ++side) {
        const auto& groups = side == 0 ? by_a : by_b;
        const int64_t x_off = offset_of[side == 0 ? pr.a : pr.b];
        for (size_t x = 0; x < groups.size(); ++x) {
          if (m.col_upper[x_off + x] == 0) continue;
          for (int32_t col : groups[x]) {
            m.row_index.push_back(col);
            m.row_value.push_back(1);
          }
          m.row_index.push_back(static_cast<int32_t>(x_off + x));
          m.row_value.push_back(-1);
          end_row(0, 0);
        }
      }
      if (static_cast<int64_t>(m.row_index.size()) > max_nonzeros) return too_big_model();
    }
  }
  if (memory && p_.has_usage_limit()) {
    const size_t first_memory_row = m.row_lower.size();
    add_memory_rows(m, assignment, is_free, lazy_memory ? std::numeric_limits<int64_t>::max() : max_nonzeros);
    if (m.too_big) return too_big_model();
    merge_memory_rows(m, first_memory_row, lazy_memory);
  }
  return m;
}

namespace {

uint64_t row_hash(std::span<const int32_t> index, std::span<const double> value) {
  uint64_t h = 1469598103934665603ull;
  for (size_t k = 0; k < index.size(); ++k) {
    h = (h ^ static_cast<uint64_t>(index[k])) * 1099511628211ull;
    h = (h ^ static_cast<uint64_t>(static_cast<int64_t>(value[k]))) * 1099511628211ull;
  }
  return h;
}

}  // namespace

void GroupModel::merge_memory_rows(GroupIlp& m, size_t first_row, bool to_pool) const {
  // Rows are rebuilt from first_row on: a row whose coefficients (columns and values, both in the same
  // order since columns are emitted group by group) equal an earlier row's only tightens that row's bound.
  struct Row {
    int64_t begin, end;
    double upper;
  };
  std::vector<Row> rows;
  std::unordered_map<uint64_t, std::vector<size_t>> by_hash;
  for (size_t r = first_row; r < m.row_lower.size(); ++r) {
    const int64_t b = m.row_start[r], e = m.row_start[r + 1];
    std::span<const int32_t> idx(m.row_index.data() + b, e - b);
    std::span<const double> val(m.row_value.data() + b, e - b);
    auto& bucket = by_hash[row_hash(idx, val)];
    bool merged = false;
    for (size_t k : bucket) {
      const Row& o = rows[k];
      if (o.end - o.begin == e - b && std::equal(idx.begin(), idx.end(), m.row_index.begin() + o.begin) &&
          std::equal(val.begin(), val.end(), m.row_value.begin() + o.begin)) {
        rows[k].upper = std::min(rows[k].upper, m.row_upper[r]);
        merged = true;
        ++m.memory_rows_merged;
        break;
      }
    }
    if (merged) continue;
    bucket.push_back(rows.size());
    rows.push_back({b, e, m.row_upper[r]});
  }
  const int64_t nz_begin = m.row_start[first_row];
  std::vector<int32_t> index(m.row_index.begin() + nz_begin, m.row_index.end());
  std::vector<double> value(m.row_value.begin() + nz_begin, m.row_value.end());
  m.row_lower.resize(first_row);
  m.row_upper.resize(first_row);
  m.row_start.resize(first_row + 1);
  m.row_index.resize(nz_begin);
  m.row_value.resize(nz_begin);
  for (const Row& row : rows) {
    auto& out_index = to_pool ? m.pool_index : m.row_index;
    auto& out_value = to_pool ? m.pool_value : m.row_value;
    out_index.insert(out_index.end(), index.begin() + (row.begin - nz_begin),
                     index.begin() + (row.end - nz_begin));
    out_value.insert(out_value.end(), value.begin() + (row.begin - nz_begin),
                     value.begin() + (row.end - nz_begin));
    if (to_pool) {
      m.pool_upper.push_back(row.upper);
      m.pool_start.push_back(static_cast<int64_t>(m.pool_index.size()));
    } else {
      m.row_lower.push_back(-std::numeric_limits<double>::infinity());
      m.row_upper.push_back(row.upper);
      m.row_start.push_back(static_cast<int64_t>(m.row_index.size()));
    }
  }
}

void GroupModel::add_memory_rows(GroupIlp& m, std::span<const int32_t> assignment,
                                 const std::vector<char>& is_free, int64_t max_nonzeros) const {
  const int points = profile_.num_points();
  // Usage of the fixed members per point (difference array).
  std::vector<int64_t> fixed(points + 1, 0);
  struct Live {
    int lo, hi;
    int32_t group, member;
  };
  std::vector<Live> free_live;
  for (int g = 0; g < r_.num_groups(); ++g) {
    for (int32_t k : live_members_[g]) {
      const auto& mem = r_.members[g][k];
      const int lo = profile_.lo(mem.node), hi = profile_.hi(mem.node);
      if (is_free[g]) {
        free_live.push_back({lo, hi, g, k});
      } else {
        const int64_t u = p_.usage_of(mem.node, mem.strategy[assignment[g]]);
        fixed[lo] += u;
        fixed[hi] -= u;
      }
    }
  }
  for (int t = 1; t <= points; ++t) fixed[t] += fixed[t - 1];
  if (free_live.empty()) return;
  std::vector<int> bounds;
  for (const Live& l : free_live) {
    bounds.push_back(l.lo);
    bounds.push_back(l.hi);
  }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  std::vector<char> ends_at(points + 1, 0);
  for (const Live& l : free_live) ends_at[l.hi] = 1;
  std::sort(free_live.begin(), free_live.end(), [](const Live& x, const Live& y) {
    return x.lo < y.lo ||
           (x.lo == y.lo && (x.group < y.group || (x.group == y.group && x.member < y.member)));
  });
  const double limit = static_cast<double>(p_.usage_limit);
  // Max fixed usage per segment [bounds[s], bounds[s+1]).
  const size_t segs = bounds.size() - 1;
  std::vector<int64_t> seg_fixed(segs, 0);
  for (size_t s = 0; s < segs; ++s) {
    int64_t mx = std::numeric_limits<int64_t>::min();
    for (int t = bounds[s]; t < bounds[s + 1]; ++t) mx = std::max(mx, fixed[t]);
    seg_fixed[s] = mx;
  }
  // Per free group, the summed usage per strategy of its members live in the current segment, kept
  // incrementally as members start and end (groups can have thousands of long-lived members).
  std::vector<Live> by_end = free_live;
  std::sort(by_end.begin(), by_end.end(), [](const Live& x, const Live& y) { return x.hi < y.hi; });
  size_t next = 0, next_end = 0;
  std::vector<std::vector<int64_t>> acc(r_.num_groups());
  std::vector<int32_t> live_count(r_.num_groups(), 0);
  std::set<int32_t> live_groups;
  std::vector<int64_t> group_col(r_.num_groups(), -1);
  for (size_t f = 0; f < m.free_groups.size(); ++f) group_col[m.free_groups[f]] = m.x_offset[f];
  auto apply = [&](const Live& l, int sign) {
    auto& a = acc[l.group];
    const auto& mem = r_.members[l.group][l.member];
    if (a.empty()) a.assign(r_.domain[l.group].size(), 0);
    for (size_t k = 0; k < a.size(); ++k) a[k] += sign * p_.usage_of(mem.node, mem.strategy[k]);
    live_count[l.group] += sign;
    if (live_count[l.group] == 0) {
      live_groups.erase(l.group);
      a.clear();
    } else {
      live_groups.insert(l.group);
    }
  };
  for (size_t s = 0; s < segs; ++s) {
    const int t = bounds[s];
    while (next_end < by_end.size() && by_end[next_end].hi <= t) apply(by_end[next_end++], -1);
    while (next < free_live.size() && free_live[next].lo <= t) apply(free_live[next++], +1);
    if (live_groups.empty()) continue;
    // Implied by the next segment's row: nothing ends between them and the fixed part there is no smaller.
    if (s + 1 < segs && !ends_at[bounds[s + 1]] && seg_fixed[s + 1] >= seg_fixed[s]) continue;
    double rhs = limit - static_cast<double>(seg_fixed[s]), spread = 0;
    const size_t row_begin = m.row_index.size();
    for (int32_t g : live_groups) {
      const auto& a = acc[g];
      // Only strategies the model allows count (a column fixed to 0 never contributes).
      int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
      for (size_t k = 0; k < a.size(); ++k) {
        if (m.col_upper[group_col[g] + static_cast<int64_t>(k)] == 0) continue;
        lo = std::min(lo, a[k]);
        hi = std::max(hi, a[k]);
      }
      if (lo > hi) {  // nothing allowed: the model is infeasible through its choice row anyway
        lo = hi = *std::min_element(a.begin(), a.end());
      }
      rhs -= static_cast<double>(lo);
      spread += static_cast<double>(hi - lo);
      for (size_t k = 0; k < a.size(); ++k) {
        const int64_t col = group_col[g] + static_cast<int64_t>(k);
        if (a[k] == lo || m.col_upper[col] == 0) continue;
        m.row_index.push_back(static_cast<int32_t>(col));
        m.row_value.push_back(static_cast<double>(a[k] - lo));
      }
    }
    if (rhs < 0) {
      m.infeasible = true;
    }
    if (spread <= rhs) {
      m.row_index.resize(row_begin);
      m.row_value.resize(row_begin);
      continue;
    }
    m.row_lower.push_back(-std::numeric_limits<double>::infinity());
    m.row_upper.push_back(rhs);
    m.row_start.push_back(static_cast<int64_t>(m.row_index.size()));
    if (static_cast<int64_t>(m.row_index.size()) > max_nonzeros) {
      m.too_big = true;
      return;
    }
  }
}

void GroupModel::add_neighbour_costs(int g, std::span<const int32_t> assignment,
                                     const std::vector<char>* is_free, bool want_free,
                                     std::vector<double>& cost) const {
  for (int32_t q : r_.adj[g]) {
    const auto& pr = r_.pairs[q];
    const int h = pr.a == g ? pr.b : pr.a;
    if (is_free != nullptr && static_cast<bool>((*is_free)[h]) != want_free) continue;
    for (size_t k = 0; k < cost.size(); ++k) {
      cost[k] += pr.a == g ? r_.pair_cost(pr, static_cast<int32_t>(k), assignment[h])
                           : r_.pair_cost(pr, assignment[h], static_cast<int32_t>(k));
    }
  }
}

std::vector<char> GroupModel::kept_strategies(int g, const std::vector<double>& fixed_cost,
                                              std::span<const int32_t> assignment,
                                              const std::vector<char>& is_free, int keep) const {
  const size_t d = fixed_cost.size();
  std::vector<double> local = fixed_cost;
  add_neighbour_costs(g, assignment, &is_free, true, local);  // the fixed ones are in fixed_cost
  std::vector<int32_t> others;
  for (size_t k = 0; k < d; ++k) {
    if (static_cast<int32_t>(k) != assignment[g] && !is_forbidden(local[k]))
      others.push_back(static_cast<int32_t>(k));
  }
  const size_t take = std::min(others.size(), static_cast<size_t>(keep));
  // Ties by index: the same model for the same assignment.
  std::partial_sort(others.begin(), others.begin() + take, others.end(), [&](int32_t x, int32_t y) {
    return local[x] < local[y] || (local[x] == local[y] && x < y);
  });
  std::vector<char> allowed(d, 0);
  allowed[assignment[g]] = 1;
  for (size_t i = 0; i < take; ++i) allowed[others[i]] = 1;
  return allowed;
}

std::vector<int32_t> GroupModel::neighbourhood(int32_t root, int size, uint64_t seed) const {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> out;
  std::vector<char> seen(r_.num_groups(), 0);
  std::vector<int32_t> queue;
  int32_t cursor = root >= 0 && root < r_.num_groups() ? time_rank_[root] : -1;
  auto enqueue = [&](int32_t g) {
    if (seen[g] || r_.domain[g].size() <= 1) return;
    seen[g] = 1;
    queue.push_back(g);
  };
  if (cursor >= 0) enqueue(root);
  size_t head = 0;
  while (static_cast<int>(out.size()) < size) {
    if (head == queue.size()) {  // component exhausted: continue in time order
      while (cursor >= 0 && cursor + 1 < static_cast<int32_t>(by_time_.size()) && seen[by_time_[cursor]])
        ++cursor;
      if (cursor < 0 || seen[by_time_[cursor]]) break;
      enqueue(by_time_[cursor]);
    }
    const int32_t g = queue[head++];
    out.push_back(g);
    std::vector<int32_t> nb;
    for (int32_t q : r_.adj[g]) nb.push_back(r_.pairs[q].a == g ? r_.pairs[q].b : r_.pairs[q].a);
    std::shuffle(nb.begin(), nb.end(), rng);
    for (int32_t h : nb) enqueue(h);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int32_t> GroupModel::time_window(std::span<const int32_t> assignment, int size, double slack,
                                             uint64_t seed) const {
  std::mt19937_64 rng(seed);
  const int points = profile_.num_points();
  std::vector<int32_t> out;
  if (points == 0 || size <= 0) return out;
  std::vector<int64_t> usage(points + 1, 0);
  for (int g = 0; g < r_.num_groups(); ++g) {
    for (int32_t k : live_members_[g]) {
      const auto& mem = r_.members[g][k];
      const int64_t u = p_.usage_of(mem.node, mem.strategy[assignment[g]]);
      usage[profile_.lo(mem.node)] += u;
      usage[profile_.hi(mem.node)] -= u;
    }
  }
  for (int t = 1; t <= points; ++t) usage[t] += usage[t - 1];
  const int64_t peak = *std::max_element(usage.begin(), usage.begin() + points);
  const double threshold = static_cast<double>(peak) - slack * std::abs(static_cast<double>(peak));
  std::vector<int> tight;
  for (int t = 0; t < points; ++t) {
    if (static_cast<double>(usage[t]) >= threshold) tight.push_back(t);
  }
  const int at = tight[std::uniform_int_distribution<size_t>(0, tight.size() - 1)(rng)];
  // Distance of each free group to `at`: 0 when one of its members is live there.
  std::vector<std::pair<int, uint64_t>> key(r_.num_groups(), {std::numeric_limits<int>::max(), 0});
  std::vector<int32_t> candidates;
  for (int32_t g : by_time_) {
    int d = std::numeric_limits<int>::max();
    for (int32_t k : live_members_[g]) {
      const int node = r_.members[g][k].node;
      const int lo = profile_.lo(node), hi = profile_.hi(node);
      d = std::min(d, at < lo ? lo - at : (at >= hi ? at - hi + 1 : 0));
    }
    if (d == std::numeric_limits<int>::max()) continue;
    key[g] = {d, rng()};
    candidates.push_back(g);
  }
  const size_t take = std::min(candidates.size(), static_cast<size_t>(size));
  std::partial_sort(candidates.begin(), candidates.begin() + take, candidates.end(),
                    [&](int32_t x, int32_t y) { return key[x] < key[y]; });
  out.assign(candidates.begin(), candidates.begin() + take);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<double> GroupModel::regret(std::span<const int32_t> assignment) const {
  std::vector<double> out(r_.num_groups(), 0.0);
  for (int g = 0; g < r_.num_groups(); ++g) {
    const size_t d = r_.domain[g].size();
    if (d <= 1) continue;
    std::vector<double> c = priced_unary(g);
    add_neighbour_costs(g, assignment, nullptr, false, c);
    const double best = *std::min_element(c.begin(), c.end());
    const double now = c[assignment[g]];
    out[g] = is_forbidden(now) ? 1e18 : std::max(0.0, now - best);
  }
  return out;
}

std::vector<double> GroupIlp::start_vector(std::span<const int32_t> assignment) const {
  std::vector<double> values(num_cols, 0.0);
  for (size_t f = 0; f < free_groups.size(); ++f) values[x_offset[f] + assignment[free_groups[f]]] = 1.0;
  for (size_t k = 0; k < y_col_a.size(); ++k) values[y_begin + k] = values[y_col_a[k]] * values[y_col_b[k]];
  return values;
}

std::vector<int32_t> GroupIlp::pool_violations(std::span<const int32_t> assignment) const {
  std::vector<char> chosen(num_cols, 0);
  for (size_t f = 0; f < free_groups.size(); ++f) chosen[x_offset[f] + assignment[free_groups[f]]] = 1;
  std::vector<int32_t> out;
  for (int64_t r = 0; r < num_pool_rows(); ++r) {
    double activity = 0;
    for (int64_t k = pool_start[r]; k < pool_start[r + 1]; ++k) {
      if (chosen[pool_index[k]]) activity += pool_value[k];
    }
    // Coefficients are integers (usages): an activity above the bound by any margin is a violation.
    if (activity > pool_upper[r] + 0.5) out.push_back(static_cast<int32_t>(r));
  }
  return out;
}

std::vector<int32_t> GroupIlp::decode(std::span<const double> col_values,
                                      std::span<const int32_t> assignment) const {
  std::vector<int32_t> out(assignment.begin(), assignment.end());
  for (size_t f = 0; f < free_groups.size(); ++f) {
    const int64_t end = f + 1 < free_groups.size() ? x_offset[f + 1] : y_begin;
    int64_t best = x_offset[f];
    for (int64_t c = x_offset[f] + 1; c < end; ++c) {
      if (col_values[c] > col_values[best]) best = c;
    }
    out[free_groups[f]] = static_cast<int32_t>(best - x_offset[f]);
  }
  return out;
}

}  // namespace autopar::solver

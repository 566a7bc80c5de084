#include "passes/intra_op/strategy_problem.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace autopar {
namespace {

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

std::string node_name(int64_t i) { return "node " + std::to_string(i); }
std::string edge_name(int64_t e) { return "edge " + std::to_string(e); }

void check_offsets(const std::vector<int64_t>& offsets, size_t rows, size_t flat_size, const char* what) {
  if (offsets.size() != rows + 1) {
    fail(std::string(what) + ": expected " + std::to_string(rows + 1) + " offsets, got " +
         std::to_string(offsets.size()));
  }
  if (offsets.front() != 0 || offsets.back() != static_cast<int64_t>(flat_size)) {
    fail(std::string(what) + ": offsets must start at 0 and end at " + std::to_string(flat_size));
  }
  for (size_t i = 0; i < rows; ++i) {
    if (offsets[i + 1] < offsets[i])
      fail(std::string(what) + ": offsets decrease at row " + std::to_string(i));
  }
}

}  // namespace

void StrategyProblem::finalize() {
  const size_t n = interval_start.size();
  if (interval_end.size() != n) fail("intervals: start and end arrays differ in length");
  if (n > static_cast<size_t>(INT32_MAX)) fail("too many nodes");
  if (node_cost.size() != node_usage.size()) fail("node costs and usages differ in total length");
  check_offsets(strategy_offset, n, node_cost.size(), "node strategies");
  for (size_t i = 0; i < n; ++i) {
    if (strategy_offset[i + 1] == strategy_offset[i]) fail(node_name(i) + " has no strategies");
    if (interval_end[i] < interval_start[i]) {
      fail(node_name(i) + ": interval [" + std::to_string(interval_start[i]) + ", " +
           std::to_string(interval_end[i]) + ") ends before it starts");
    }
    for (int64_t k = strategy_offset[i]; k < strategy_offset[i + 1]; ++k) {
      const int64_t s = k - strategy_offset[i];
      if (std::isnan(node_cost[k])) fail(node_name(i) + " strategy " + std::to_string(s) + ": cost is NaN");
      if (node_usage[k] < 0) fail(node_name(i) + " strategy " + std::to_string(s) + ": usage is negative");
    }
  }
  const size_t m = edge_u.size();
  if (edge_v.size() != m) fail("edges: u and v arrays differ in length");
  check_offsets(edge_offset, m, edge_cost.size(), "edge costs");
  for (size_t e = 0; e < m; ++e) {
    const int64_t u = edge_u[e], v = edge_v[e];
    if (u < 0 || u >= static_cast<int64_t>(n) || v < 0 || v >= static_cast<int64_t>(n)) {
      fail(edge_name(e) + " joins nodes (" + std::to_string(u) + ", " + std::to_string(v) +
           ") but there are " + std::to_string(n) + " nodes");
    }
    if (u == v) fail(edge_name(e) + " joins node " + std::to_string(u) + " to itself");
    const int64_t expected = static_cast<int64_t>(num_strategies(u)) * num_strategies(v);
    if (edge_offset[e + 1] - edge_offset[e] != expected) {
      fail(edge_name(e) + " (" + std::to_string(u) + ", " + std::to_string(v) + ") has " +
           std::to_string(edge_offset[e + 1] - edge_offset[e]) + " costs, expected " +
           std::to_string(expected) + " (" + std::to_string(num_strategies(u)) + " x " +
           std::to_string(num_strategies(v)) + " strategies)");
    }
    for (int64_t k = edge_offset[e]; k < edge_offset[e + 1]; ++k) {
      if (std::isnan(edge_cost[k]))
        fail(edge_name(e) + ": cost " + std::to_string(k - edge_offset[e]) + " is NaN");
    }
  }
  if (usage_limit < 0 && usage_limit != kNoUsageLimit) fail("usage_limit must be >= 0");

  // Empty intervals [t, t) are never live; leaving them out keeps the sweep's end-before-start order valid.
  by_start.clear();
  for (size_t i = 0; i < n; ++i) {
    if (interval_end[i] > interval_start[i]) by_start.push_back(static_cast<int32_t>(i));
  }
  by_end = by_start;
  std::stable_sort(by_start.begin(), by_start.end(),
                   [&](int32_t a, int32_t b) { return interval_start[a] < interval_start[b]; });
  std::stable_sort(by_end.begin(), by_end.end(),
                   [&](int32_t a, int32_t b) { return interval_end[a] < interval_end[b]; });
}

int64_t peak_usage(const StrategyProblem& p, std::span<const int32_t> solution) {
  int64_t current = 0, peak = 0;
  size_t j = 0;
  const size_t live = p.by_start.size();
  for (size_t i = 0; i < live;) {
    const int64_t t = p.interval_start[p.by_start[i]];
    for (; j < live && p.interval_end[p.by_end[j]] <= t; ++j)
      current -= p.usage_of(p.by_end[j], solution[p.by_end[j]]);
    for (; i < live && p.interval_start[p.by_start[i]] == t; ++i) {
      current += p.usage_of(p.by_start[i], solution[p.by_start[i]]);
    }
    peak = std::max(peak, current);
  }
  return peak;
}

void assign_edges(StrategyProblem& p, std::span<const int64_t> u, std::span<const int64_t> v) {
  if (u.size() != v.size()) fail("edges: u and v arrays differ in length");
  const int64_t n = p.num_nodes();
  p.edge_u.resize(u.size());
  p.edge_v.resize(v.size());
  for (size_t e = 0; e < u.size(); ++e) {
    if (u[e] < 0 || v[e] < 0 || u[e] >= n || v[e] >= n) {
      fail(edge_name(e) + " joins nodes (" + std::to_string(u[e]) + ", " + std::to_string(v[e]) +
           ") but there are " + std::to_string(n) + " nodes");
    }
    p.edge_u[e] = static_cast<int32_t>(u[e]);
    p.edge_v[e] = static_cast<int32_t>(v[e]);
  }
}

Evaluation evaluate(const StrategyProblem& p, std::span<const int64_t> solution) {
  const int n = p.num_nodes();
  if (solution.size() != static_cast<size_t>(n)) {
    fail("solution has " + std::to_string(solution.size()) + " entries, the problem has " +
         std::to_string(n) + " nodes");
  }
  std::vector<int32_t> chosen(n);
  for (int i = 0; i < n; ++i) {
    if (solution[i] < 0 || solution[i] >= p.num_strategies(i)) {
      fail("solution: " + node_name(i) + " picks strategy " + std::to_string(solution[i]) + " but has " +
           std::to_string(p.num_strategies(i)) + " strategies");
    }
    chosen[i] = static_cast<int32_t>(solution[i]);
  }
  Evaluation result;
  bool forbidden = false;
  for (int i = 0; i < n; ++i) {
    const double c = p.cost_of(i, chosen[i]);
    forbidden |= is_forbidden(c);
    result.cost += c;
  }
  for (int e = 0; e < p.num_edges(); ++e) {
    const double c = p.edge_cost_of(e, chosen[p.edge_u[e]], chosen[p.edge_v[e]]);
    forbidden |= is_forbidden(c);
    result.cost += c;
  }
  result.peak_usage = peak_usage(p, chosen);
  result.feasible = !forbidden && (!p.has_usage_limit() || result.peak_usage <= p.usage_limit);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// JSON reading. A schema-directed, single-pass reader rather than a general JSON library: the contest files
// are tens of MB of numbers, and reading them straight into the flat arrays above (no DOM, no Python objects)
// loads the largest public problem in well under a second, and lets every error name the field it is in.
// Gzip is undone by the caller (Python's gzip module) so the core needs no zlib.
namespace {

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : s_(text) {}

  [[noreturn]] void error(const std::string& what) const {
    fail("malformed problem JSON at byte " + std::to_string(pos_) + ": " + what);
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t'))
      ++pos_;
  }
  char peek() {
    skip_ws();
    if (pos_ >= s_.size()) error("unexpected end of input");
    return s_[pos_];
  }
  void expect(char c) {
    if (peek() != c) error(std::string("expected '") + c + "', found '" + s_[pos_] + "'");
    ++pos_;
  }
  bool at_end() {
    skip_ws();
    return pos_ >= s_.size();
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) error("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) error("unterminated string");
      const char esc = s_[pos_++];
      switch (esc) {
        case 'n':
          out.push_back('\n');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'u':  // Names only: a non-ASCII code point is kept as '?' rather than re-encoded.
          if (pos_ + 4 > s_.size()) error("bad \\u escape");
          pos_ += 4;
          out.push_back('?');
          break;
        default:
          out.push_back(esc);
      }
    }
  }

  // Returns the raw number token; JSON grammar is checked loosely, from_chars checks the rest.
  std::string_view number_token() {
    skip_ws();
    const size_t begin = pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
        ++pos_;
      } else {
        break;
      }
    }
    if (begin == pos_) error("expected a number");
    return s_.substr(begin, pos_ - begin);
  }

  double parse_double() {
    const std::string_view tok = number_token();
    double value = 0;
    auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), value);
    if (ec == std::errc::result_out_of_range) return tok[0] == '-' ? -HUGE_VAL : HUGE_VAL;
    if (ec != std::errc() || ptr != tok.data() + tok.size()) error("bad number '" + std::string(tok) + "'");
    return value;
  }

  int64_t parse_int() {
    const std::string_view tok = number_token();
    int64_t value = 0;
    auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), value);
    if (ec == std::errc() && ptr == tok.data() + tok.size()) return value;
    double d = 0;  // Also accept integral values written as 1e3 or 10.0.
    auto [dptr, dec] = std::from_chars(tok.data(), tok.data() + tok.size(), d);
    if (dec != std::errc() || dptr != tok.data() + tok.size() || d != std::floor(d) ||
        std::fabs(d) > 9.2e18) {
      error("expected an integer, found '" + std::string(tok) + "'");
    }
    return static_cast<int64_t>(d);
  }

  // Calls each() once per element, positioned at the element.
  template <typename F>
  void parse_array(F&& each) {
    expect('[');
    if (peek() == ']') {
      ++pos_;
      return;
    }
    while (true) {
      each();
      const char c = peek();
      ++pos_;
      if (c == ']') return;
      if (c != ',') error(std::string("expected ',' or ']', found '") + c + "'");
    }
  }

  template <typename F>
  void parse_object(F&& each_key) {
    expect('{');
    if (peek() == '}') {
      ++pos_;
      return;
    }
    while (true) {
      const std::string key = parse_string();
      expect(':');
      each_key(key);
      const char c = peek();
      ++pos_;
      if (c == '}') return;
      if (c != ',') error(std::string("expected ',' or '}', found '") + c + "'");
    }
  }

  void skip_value() {
    const char c = peek();
    if (c == '{') {
      parse_object([&](const std::string&) { skip_value(); });
    } else if (c == '[') {
      parse_array([&] { skip_value(); });
    } else if (c == '"') {
      parse_string();
    } else if (s_.substr(pos_, 4) == "true" || s_.substr(pos_, 4) == "null") {
      pos_ += 4;
    } else if (s_.substr(pos_, 5) == "false") {
      pos_ += 5;
    } else {
      number_token();
    }
  }

  bool try_null() {
    if (peek() == 'n' && s_.substr(pos_, 4) == "null") {
      pos_ += 4;
      return true;
    }
    return false;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

// A list of numeric lists read into one flat array plus row offsets.
template <typename T, typename ParseOne>
void parse_rows(JsonReader& r, std::vector<T>& flat, std::vector<int64_t>& offsets, ParseOne parse_one) {
  offsets.assign(1, 0);
  r.parse_array([&] {
    r.parse_array([&] { flat.push_back(parse_one()); });
    offsets.push_back(static_cast<int64_t>(flat.size()));
  });
}

void parse_pairs(JsonReader& r, std::vector<int64_t>& first, std::vector<int64_t>& second, const char* what) {
  r.parse_array([&] {
    int count = 0;
    r.parse_array([&] {
      const int64_t v = r.parse_int();
      if (count == 0) first.push_back(v);
      if (count == 1) second.push_back(v);
      ++count;
    });
    if (count != 2) {
      fail(std::string(what) + "[" + std::to_string(first.size() - (count > 0)) + "] has " +
           std::to_string(count) + " entries, expected 2");
    }
  });
}

struct ParsedProblem {
  StrategyProblem problem;
  std::vector<int64_t> usage_offset;
  std::vector<int64_t> edge_u, edge_v;
  bool has_intervals = false, has_costs = false, has_usages = false, has_edge_nodes = false,
       has_edge_costs = false;
};

void parse_problem_field(JsonReader& r, const std::string& key, ParsedProblem& out) {
  StrategyProblem& p = out.problem;
  if (key == "name") {
    if (r.peek() == '"') {
      p.name = r.parse_string();
    } else {
      r.skip_value();
    }
  } else if (key == "usage_limit") {
    if (!r.try_null()) {
      p.usage_limit = r.parse_int();
      if (p.usage_limit < 0) fail("usage_limit must be >= 0, got " + std::to_string(p.usage_limit));
    }
  } else if (key == "nodes") {
    r.parse_object([&](const std::string& k) {
      if (k == "intervals") {
        parse_pairs(r, p.interval_start, p.interval_end, "nodes.intervals");
        out.has_intervals = true;
      } else if (k == "costs") {
        parse_rows(r, p.node_cost, p.strategy_offset, [&] { return r.parse_double(); });
        out.has_costs = true;
      } else if (k == "usages") {
        parse_rows(r, p.node_usage, out.usage_offset, [&] { return r.parse_int(); });
        out.has_usages = true;
      } else {
        r.skip_value();
      }
    });
  } else if (key == "edges") {
    r.parse_object([&](const std::string& k) {
      if (k == "nodes") {
        parse_pairs(r, out.edge_u, out.edge_v, "edges.nodes");
        out.has_edge_nodes = true;
      } else if (k == "costs") {
        parse_rows(r, p.edge_cost, p.edge_offset, [&] { return r.parse_double(); });
        out.has_edge_costs = true;
      } else {
        r.skip_value();
      }
    });
  } else {
    r.skip_value();
  }
}

}  // namespace

StrategyProblem parse_problem_json(std::string_view text) {
  JsonReader r(text);
  ParsedProblem parsed;
  bool wrapped = false;
  r.parse_object([&](const std::string& key) {
    if (key == "problem") {
      wrapped = true;
      r.parse_object([&](const std::string& k) { parse_problem_field(r, k, parsed); });
    } else {
      parse_problem_field(r, key, parsed);
    }
  });
  if (!r.at_end()) r.error("trailing characters after the problem object");
  (void)wrapped;
  if (!parsed.has_intervals) fail("problem JSON has no nodes.intervals");
  if (!parsed.has_costs) fail("problem JSON has no nodes.costs");
  if (!parsed.has_usages) fail("problem JSON has no nodes.usages");
  StrategyProblem& p = parsed.problem;
  const size_t n = p.interval_start.size();
  if (p.strategy_offset.size() != n + 1) {
    fail("nodes.costs has " + std::to_string(p.strategy_offset.size() - 1) +
         " rows but nodes.intervals has " + std::to_string(n));
  }
  if (parsed.usage_offset.size() != n + 1) {
    fail("nodes.usages has " + std::to_string(parsed.usage_offset.size() - 1) +
         " rows but nodes.intervals has " + std::to_string(n));
  }
  for (size_t i = 0; i < n; ++i) {
    const int64_t nc = p.strategy_offset[i + 1] - p.strategy_offset[i];
    const int64_t nu = parsed.usage_offset[i + 1] - parsed.usage_offset[i];
    if (nc != nu) {
      fail(node_name(i) + " has " + std::to_string(nc) + " costs but " + std::to_string(nu) + " usages");
    }
  }
  if (parsed.has_edge_nodes != parsed.has_edge_costs) fail("edges needs both nodes and costs");
  if (!parsed.has_edge_costs) p.edge_offset.assign(1, 0);
  if (p.edge_offset.size() != parsed.edge_u.size() + 1) {
    fail("edges.costs has " + std::to_string(p.edge_offset.size() - 1) + " rows but edges.nodes has " +
         std::to_string(parsed.edge_u.size()));
  }
  assign_edges(p, parsed.edge_u, parsed.edge_v);
  p.finalize();
  return std::move(p);
}

}  // namespace autopar

// Python view of the intra-op solver core (passes/intra_op): the heuristic fast path and the ILP model for
// the exact path. The orchestration (which path, HiGHS, status) lives in autopar/solver.py.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "csrc/bindings.h"
#include "csrc/numpy_util.h"
#include "passes/intra_op/group_ilp.h"
#include "passes/intra_op/heuristic.h"
#include "passes/intra_op/strategy_problem.h"

namespace nb = nanobind;

namespace autopar {
namespace {

std::vector<int32_t> narrow(std::span<const int64_t> values) {
  std::vector<int32_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] < 0 || values[i] > INT32_MAX) {
      throw std::invalid_argument("solution: node " + std::to_string(i) + " picks strategy " +
                                  std::to_string(values[i]) + " out of range");
    }
    out[i] = static_cast<int32_t>(values[i]);
  }
  return out;
}

// What the heuristic fast path found; the solution is an int64 numpy array as the public API takes.
struct HeuristicOutcome {
  nb::object solution;
  double cost = 0;
  int64_t peak_usage = 0;
  bool feasible = false;
  int64_t min_peak_usage = 0;
  double time_to_first_feasible = -1;
  double time_to_best = 0;
  int64_t rounds = 0;
};

HeuristicOutcome run_heuristic(const StrategyProblem& p, double time_limit, uint64_t seed, int64_t max_rounds,
                               std::optional<Array1D<const int64_t>> initial) {
  solver::HeuristicOptions options{time_limit, seed, max_rounds};
  std::vector<int32_t> start;
  if (initial) start = narrow(to_span(*initial));
  solver::HeuristicResult r;
  {
    nb::gil_scoped_release release;
    r = solver::solve_heuristic(p, options, start);
  }
  HeuristicOutcome out;
  out.solution = to_numpy(std::vector<int64_t>(r.solution.begin(), r.solution.end()));
  out.cost = r.cost;
  out.peak_usage = r.peak_usage;
  out.feasible = r.feasible;
  out.min_peak_usage = r.min_peak_usage;
  out.time_to_first_feasible = r.time_to_first_feasible;
  out.time_to_best = r.time_to_best;
  out.rounds = r.rounds;
  return out;
}

// An ILP in HiGHS's column-wise-cost, row-wise-CSR form, copied into numpy once.
struct IlpArrays {
  nb::object col_cost, col_upper, col_integer, row_lower, row_upper, row_start, row_index, row_value;
  int64_t num_cols = 0, num_rows = 0;
};

template <typename Model>
IlpArrays ilp_arrays(const Model& m) {
  IlpArrays a;
  a.col_cost = to_numpy(m.col_cost);
  a.col_upper = to_numpy(m.col_upper);
  a.col_integer = to_numpy(m.col_integer);
  a.row_lower = to_numpy(m.row_lower);
  a.row_upper = to_numpy(m.row_upper);
  a.row_start = to_numpy(m.row_start);
  a.row_index = to_numpy(m.row_index);
  a.row_value = to_numpy(m.row_value);
  a.num_cols = static_cast<int64_t>(m.col_cost.size());
  a.num_rows = static_cast<int64_t>(m.row_lower.size());
  return a;
}

// Lazily added memory rows: a CSR slice of the pool, ready for Highs.addRows (lower bound -inf).
struct PoolRows {
  nb::object upper, start, index, value;
  int64_t num_rows = 0;
};

// What presolve did (docs/solver.md, "Presolve").
struct PresolveStats {
  int64_t groups = 0, free_groups = 0, pairs = 0, components = 0, free_strategies = 0;
  int64_t merged = 0, folded = 0, dominated = 0, arc_removed = 0, entries_scanned = 0;
};

void bind_results(nb::module_& m) {
  nb::class_<HeuristicOutcome>(m, "HeuristicResult", "What solve_heuristic found (read-only attributes).")
      .def_ro("solution", &HeuristicOutcome::solution, "int64[N]: a strategy per node (the best found).")
      .def_ro("cost", &HeuristicOutcome::cost, "Its cost (>= INFINITE_COST when nothing finite was found).")
      .def_ro("peak_usage", &HeuristicOutcome::peak_usage, "Its peak usage.")
      .def_ro("feasible", &HeuristicOutcome::feasible, "Finite cost and within the usage limit.")
      .def_ro("min_peak_usage", &HeuristicOutcome::min_peak_usage,
              "Lower bound on the peak of any finite-cost solution (above the limit: proven infeasible).")
      .def_ro("time_to_first_feasible", &HeuristicOutcome::time_to_first_feasible,
              "Seconds to the first feasible solution; -1 if none.")
      .def_ro("time_to_best", &HeuristicOutcome::time_to_best, "Seconds to the returned solution.")
      .def_ro("rounds", &HeuristicOutcome::rounds, "Perturbation rounds run (local search between them).")
      .def("__repr__", [](const HeuristicOutcome& r) {
        return "HeuristicResult(cost=" + std::string(nb::repr(nb::float_(r.cost)).c_str()) +
               ", peak_usage=" + std::to_string(r.peak_usage) +
               ", feasible=" + (r.feasible ? "True" : "False") + ", rounds=" + std::to_string(r.rounds) + ")";
      });
  nb::class_<IlpArrays>(m, "IlpArrays", "A GroupIlp's arrays for HiGHS (numpy, read-only attributes).")
      .def_ro("col_cost", &IlpArrays::col_cost, "float64[cols]: objective coefficients.")
      .def_ro("col_upper", &IlpArrays::col_upper, "float64[cols]: upper bounds (lower bounds are 0).")
      .def_ro("col_integer", &IlpArrays::col_integer, "uint8[cols]: 1 for an integer column.")
      .def_ro("row_lower", &IlpArrays::row_lower, "float64[rows]")
      .def_ro("row_upper", &IlpArrays::row_upper, "float64[rows]")
      .def_ro("row_start", &IlpArrays::row_start, "int64[rows+1]: CSR row offsets.")
      .def_ro("row_index", &IlpArrays::row_index, "int32[nonzeros]: CSR column indices.")
      .def_ro("row_value", &IlpArrays::row_value, "float64[nonzeros]: CSR values.")
      .def("__repr__", [](const IlpArrays& a) {
        return "IlpArrays(num_cols=" + std::to_string(a.num_cols) +
               ", num_rows=" + std::to_string(a.num_rows) + ")";
      });
  nb::class_<PoolRows>(m, "PoolRows", "Pool rows to add to HiGHS: CSR slice (numpy, read-only attributes).")
      .def_ro("upper", &PoolRows::upper, "float64[rows]: upper bounds.")
      .def_ro("start", &PoolRows::start, "int32[rows+1]: CSR row offsets.")
      .def_ro("index", &PoolRows::index, "int32[nonzeros]: CSR column indices.")
      .def_ro("value", &PoolRows::value, "float64[nonzeros]: CSR values.")
      .def("__repr__",
           [](const PoolRows& r) { return "PoolRows(num_rows=" + std::to_string(r.num_rows) + ")"; });
  nb::class_<PresolveStats>(m, "PresolveStats", "What presolve did (read-only attributes).")
      .def_ro("groups", &PresolveStats::groups, "Groups of nodes that move together.")
      .def_ro("free_groups", &PresolveStats::free_groups, "Groups left with a choice.")
      .def_ro("pairs", &PresolveStats::pairs, "Pair tables between groups.")
      .def_ro("components", &PresolveStats::components, "Connected components of the free groups.")
      .def_ro("free_strategies", &PresolveStats::free_strategies, "Strategies summed over free groups.")
      .def_ro("merged", &PresolveStats::merged, "Groups merged into another (follow chains).")
      .def_ro("folded", &PresolveStats::folded, "Singleton groups folded into their neighbours.")
      .def_ro("dominated", &PresolveStats::dominated, "Dominated strategies removed.")
      .def_ro("arc_removed", &PresolveStats::arc_removed,
              "Strategies removed by arc consistency (forbidden against every strategy of a neighbour).")
      .def_ro("entries_scanned", &PresolveStats::entries_scanned,
              "Pair table entries read by the support and follow checks (presolve's deterministic work).")
      .def("__repr__", [](const PresolveStats& s) {
        return "PresolveStats(groups=" + std::to_string(s.groups) +
               ", free_groups=" + std::to_string(s.free_groups) + ", pairs=" + std::to_string(s.pairs) +
               ", components=" + std::to_string(s.components) +
               ", free_strategies=" + std::to_string(s.free_strategies) +
               ", merged=" + std::to_string(s.merged) + ", folded=" + std::to_string(s.folded) +
               ", dominated=" + std::to_string(s.dominated) +
               ", arc_removed=" + std::to_string(s.arc_removed) +
               ", entries_scanned=" + std::to_string(s.entries_scanned) + ")";
      });
}

// A group assignment from Python, checked against the presolved model (length and domain ranges).
std::vector<int32_t> checked_assignment(const solver::Presolved& r, Array1D<const int32_t> a) {
  if (static_cast<int>(a.shape(0)) != r.num_groups()) {
    throw std::invalid_argument("assignment has " + std::to_string(a.shape(0)) + " entries, expected " +
                                std::to_string(r.num_groups()) + " (one per group)");
  }
  std::vector<int32_t> out = to_vector(a);
  for (int g = 0; g < r.num_groups(); ++g) {
    if (out[g] < 0 || out[g] >= static_cast<int32_t>(r.domain[g].size())) {
      throw std::invalid_argument("assignment: group " + std::to_string(g) + " picks " +
                                  std::to_string(out[g]) + ", out of range");
    }
  }
  return out;
}

void bind_group_model(nb::module_& m) {
  using solver::GroupIlp;
  using solver::GroupModel;
  nb::class_<GroupIlp>(m, "GroupIlp", "An ILP over presolved groups (see group_ilp.h).")
      .def_prop_ro("num_cols", [](const GroupIlp& x) { return x.num_cols; })
      .def_prop_ro("num_rows", &GroupIlp::num_rows)
      .def_prop_ro("num_nonzeros", [](const GroupIlp& x) { return x.row_index.size(); })
      .def_prop_ro("too_big", [](const GroupIlp& x) { return x.too_big; })
      .def_prop_ro("infeasible", [](const GroupIlp& x) { return x.infeasible; })
      .def_prop_ro("objective_offset", [](const GroupIlp& x) { return x.objective_offset; })
      .def_prop_ro("num_free", [](const GroupIlp& x) { return x.free_groups.size(); })
      .def("arrays", &ilp_arrays<GroupIlp>, "Copies of the model's arrays (an IlpArrays).")
      .def_prop_ro("num_pool_rows", &GroupIlp::num_pool_rows)
      .def_prop_ro("memory_rows_merged", [](const GroupIlp& x) { return x.memory_rows_merged; })
      .def("pool_violations",
           [](const GroupIlp& x, Array1D<const int32_t> a) {
             for (int32_t g : x.free_groups) {
               if (g >= static_cast<int32_t>(a.shape(0)))
                 throw std::invalid_argument("pool: assignment too short");
             }
             return to_numpy(x.pool_violations(to_span(a)));
           })
      .def("pool_rows",
           [](const GroupIlp& x, Array1D<const int32_t> rows) {
             // The CSR slice of the given pool rows, ready for Highs.addRows.
             std::vector<double> upper;
             std::vector<int32_t> start{0}, index;
             std::vector<double> value;
             for (int32_t r : to_span(rows)) {
               if (r < 0 || r >= x.num_pool_rows())
                 throw std::invalid_argument("pool_rows: row out of range");
               upper.push_back(x.pool_upper[r]);
               index.insert(index.end(), x.pool_index.begin() + x.pool_start[r],
                            x.pool_index.begin() + x.pool_start[r + 1]);
               value.insert(value.end(), x.pool_value.begin() + x.pool_start[r],
                            x.pool_value.begin() + x.pool_start[r + 1]);
               start.push_back(static_cast<int32_t>(index.size()));
             }
             PoolRows out;
             out.num_rows = static_cast<int64_t>(upper.size());
             out.upper = to_numpy(std::move(upper));
             out.start = to_numpy(std::move(start));
             out.index = to_numpy(std::move(index));
             out.value = to_numpy(std::move(value));
             return out;
           })
      .def("start_vector",
           [](const GroupIlp& x, Array1D<const int32_t> a) {
             for (size_t f = 0; f < x.free_groups.size(); ++f) {
               const int32_t g = x.free_groups[f];
               if (g >= static_cast<int32_t>(a.shape(0)))
                 throw std::invalid_argument("start: assignment too short");
             }
             return to_numpy(x.start_vector(to_span(a)));
           })
      .def("decode", [](const GroupIlp& x, Array1D<const double> values, Array1D<const int32_t> a) {
        if (static_cast<int64_t>(values.shape(0)) != x.num_cols)
          throw std::invalid_argument("decode: wrong length");
        for (int32_t g : x.free_groups) {
          if (g >= static_cast<int32_t>(a.shape(0)))
            throw std::invalid_argument("decode: assignment too short");
        }
        return to_numpy(x.decode(to_span(values), to_span(a)));
      });
  nb::class_<GroupModel>(m, "GroupModel", "The presolved problem (groups of nodes that move together).")
      .def(
          "__init__",
          [](GroupModel* self, const StrategyProblem& p) {
            nb::gil_scoped_release release;
            new (self) GroupModel(p, solver::presolve(p));
          },
          nb::arg("problem"), nb::keep_alive<1, 2>())
      .def_prop_ro("infeasible", [](const GroupModel& x) { return x.presolved().infeasible; })
      .def_prop_ro("infeasible_node", [](const GroupModel& x) { return x.presolved().infeasible_node; })
      .def_prop_ro("num_groups", [](const GroupModel& x) { return x.presolved().num_groups(); })
      .def_prop_ro("has_usage_limit", [](const GroupModel& x) { return x.problem().has_usage_limit(); })
      .def("stats",
           [](const GroupModel& x) {
             const auto& r = x.presolved();
             PresolveStats st;
             st.groups = r.num_groups();
             st.free_groups = r.num_free_groups();
             st.pairs = static_cast<int64_t>(r.pairs.size());
             st.components = r.num_components();
             for (const auto& v : r.domain)
               st.free_strategies += v.size() > 1 ? static_cast<int64_t>(v.size()) : 0;
             st.merged = r.merged;
             st.folded = r.folded;
             st.dominated = r.dominated;
             st.arc_removed = r.arc_removed;
             st.entries_scanned = r.entries_scanned;
             return st;
           })
      .def("free_groups",
           [](const GroupModel& x) {
             std::vector<int32_t> out;
             for (int g = 0; g < x.presolved().num_groups(); ++g) {
               if (x.presolved().domain[g].size() > 1) out.push_back(g);
             }
             return to_numpy(std::move(out));
           })
      .def("encode",
           [](const GroupModel& x, Array1D<const int64_t> solution) -> std::optional<nb::object> {
             if (solution.shape(0) != x.presolved().group_of.size())
               throw std::invalid_argument("encode: wrong length");
             std::vector<int32_t> a = x.presolved().encode(narrow(to_span(solution)));
             if (a.empty() && x.presolved().num_groups() > 0) return std::nullopt;
             return to_numpy(std::move(a));
           })
      .def("expand",
           [](const GroupModel& x, Array1D<const int32_t> a) {
             std::vector<int32_t> s = x.presolved().expand(checked_assignment(x.presolved(), a));
             return to_numpy(std::vector<int64_t>(s.begin(), s.end()));
           })
      .def("cost",
           [](const GroupModel& x, Array1D<const int32_t> a) {
             return x.presolved().cost(checked_assignment(x.presolved(), a));
           })
      .def(
          "build",
          [](const GroupModel& x, Array1D<const int32_t> a, Array1D<const int32_t> free_groups,
             int64_t max_nonzeros, bool lazy_memory, bool memory, int keep) {
            std::vector<int32_t> assignment = checked_assignment(x.presolved(), a);
            std::vector<int32_t> fg = to_vector(free_groups);
            for (int32_t g : fg) {
              if (g < 0 || g >= x.presolved().num_groups())
                throw std::invalid_argument("build: group out of range");
            }
            if (keep < 0)
              throw std::invalid_argument("build: keep must be >= 0, got " + std::to_string(keep));
            nb::gil_scoped_release release;
            return x.build(assignment, fg, max_nonzeros, lazy_memory, memory, keep);
          },
          nb::arg("assignment"), nb::arg("free_groups"), nb::arg("max_nonzeros"),
          nb::arg("lazy_memory") = false, nb::arg("memory") = true, nb::arg("keep") = 0)
      .def(
          "set_memory_price",
          [](GroupModel& x, Array1D<const double> node_price) {
            if (node_price.shape(0) != 0 && node_price.shape(0) != x.presolved().group_of.size())
              throw std::invalid_argument("set_memory_price: expected one price per node (or none)");
            std::vector<double> prices = to_vector(node_price);
            for (double v : prices) {
              if (!(v >= 0) || !std::isfinite(v))
                throw std::invalid_argument("set_memory_price: prices must be finite and >= 0");
            }
            nb::gil_scoped_release release;
            x.set_memory_price(prices);
          },
          nb::arg("node_price"),
          "Adds price[node] x usage to every strategy's cost in build() and regret() (empty: none).")
      .def("neighbourhood", [](const GroupModel& x, int32_t root, int size,
                               uint64_t seed) { return to_numpy(x.neighbourhood(root, size, seed)); })
      .def("time_window",
           [](const GroupModel& x, Array1D<const int32_t> a, int size, double slack, uint64_t seed) {
             std::vector<int32_t> assignment = checked_assignment(x.presolved(), a);
             return to_numpy(x.time_window(assignment, size, slack, seed));
           })
      .def("regret", [](const GroupModel& x, Array1D<const int32_t> a) {
        return to_numpy(x.regret(checked_assignment(x.presolved(), a)));
      });
}

}  // namespace

void bind_solver(nb::module_& m) {
  bind_results(m);
  m.def("solve_heuristic", &run_heuristic, nb::arg("problem"), nb::arg("time_limit"), nb::arg("seed"),
        nb::arg("max_rounds") = -1, nb::arg("initial").none() = nb::none(),
        "Greedy + memory repair + local search; returns a HeuristicResult.");
  bind_group_model(m);
}

}  // namespace autopar

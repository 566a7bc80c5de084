// Python view of the intra-op solver core (passes/intra_op): the heuristic fast path and the ILP model for
// the exact path. The orchestration (which path, HiGHS, status) lives in autopar/solver.py.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>

#include <cmath>
#include <stdexcept>

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

nb::dict run_heuristic(const StrategyProblem& p, double time_limit, uint64_t seed, int64_t max_rounds,
                       std::optional<Array1D<const int64_t>> initial) {
  solver::HeuristicOptions options{time_limit, seed, max_rounds};
  std::vector<int32_t> start;
  if (initial) start = narrow(to_span(*initial));
  solver::HeuristicResult r;
  {
    nb::gil_scoped_release release;
    r = solver::solve_heuristic(p, options, start);
  }
  nb::dict d;
  d["solution"] = to_numpy(std::vector<int64_t>(r.solution.begin(), r.solution.end()));
  d["cost"] = r.cost;
  d["peak_usage"] = r.peak_usage;
  d["feasible"] = r.feasible;
  d["min_peak_usage"] = r.min_peak_usage;
  d["time_to_first_feasible"] = r.time_to_first_feasible;
  d["time_to_best"] = r.time_to_best;
  d["rounds"] = r.rounds;
  return d;
}

template <typename Model>
nb::dict ilp_arrays(const Model& m) {
  nb::dict d;
  d["col_cost"] = to_numpy(m.col_cost);
  d["col_upper"] = to_numpy(m.col_upper);
  d["col_integer"] = to_numpy(m.col_integer);
  d["row_lower"] = to_numpy(m.row_lower);
  d["row_upper"] = to_numpy(m.row_upper);
  d["row_start"] = to_numpy(m.row_start);
  d["row_index"] = to_numpy(m.row_index);
  d["row_value"] = to_numpy(m.row_value);
  return d;
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
      .def("arrays", &ilp_arrays<GroupIlp>)
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
             nb::dict d;
             d["upper"] = to_numpy(std::move(upper));
             d["start"] = to_numpy(std::move(start));
             d["index"] = to_numpy(std::move(index));
             d["value"] = to_numpy(std::move(value));
             return d;
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
             nb::dict d;
             d["groups"] = r.num_groups();
             d["free_groups"] = r.num_free_groups();
             d["pairs"] = r.pairs.size();
             d["components"] = r.num_components();
             int64_t dom = 0;
             for (const auto& v : r.domain) dom += v.size() > 1 ? static_cast<int64_t>(v.size()) : 0;
             d["free_strategies"] = dom;
             d["merged"] = r.merged;
             d["folded"] = r.folded;
             d["dominated"] = r.dominated;
             d["arc_removed"] = r.arc_removed;
             return d;
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
             int64_t max_nonzeros, bool lazy_memory, bool memory) {
            std::vector<int32_t> assignment = checked_assignment(x.presolved(), a);
            std::vector<int32_t> fg = to_vector(free_groups);
            for (int32_t g : fg) {
              if (g < 0 || g >= x.presolved().num_groups())
                throw std::invalid_argument("build: group out of range");
            }
            nb::gil_scoped_release release;
            return x.build(assignment, fg, max_nonzeros, lazy_memory, memory);
          },
          nb::arg("assignment"), nb::arg("free_groups"), nb::arg("max_nonzeros"),
          nb::arg("lazy_memory") = false, nb::arg("memory") = true)
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
  m.def("solve_heuristic", &run_heuristic, nb::arg("problem"), nb::arg("time_limit"), nb::arg("seed"),
        nb::arg("max_rounds") = -1, nb::arg("initial").none() = nb::none(),
        "Greedy + memory repair + local search; returns a dict (solution, cost, peak_usage, feasible, ...).");
  bind_group_model(m);
}

}  // namespace autopar

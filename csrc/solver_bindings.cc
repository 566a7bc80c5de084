// Python view of the solver core (passes/solver): the heuristic fast path and the ILP model for the exact
// path. The orchestration (which path, HiGHS, status) lives in autopar/solver.py.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>

#include <stdexcept>

#include "csrc/bindings.h"
#include "csrc/numpy_util.h"
#include "csrc/strategy_problem.h"
#include "passes/solver/heuristic.h"
#include "passes/solver/ilp_model.h"

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

nb::dict ilp_arrays(const solver::IlpModel& m) {
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

}  // namespace

void bind_solver(nb::module_& m) {
  m.def("solve_heuristic", &run_heuristic, nb::arg("problem"), nb::arg("time_limit"), nb::arg("seed"),
        nb::arg("max_rounds") = -1, nb::arg("initial").none() = nb::none(),
        "Greedy + memory repair + local search; returns a dict (solution, cost, peak_usage, feasible, ...).");
  nb::class_<solver::IlpModel>(m, "IlpModel", "The strategy problem as a reduced 0-1 ILP (see ilp_model.h).")
      .def_prop_ro("num_cols", [](const solver::IlpModel& x) { return x.num_cols; })
      .def_prop_ro("num_rows", &solver::IlpModel::num_rows)
      .def_prop_ro("num_nonzeros", [](const solver::IlpModel& x) { return x.row_index.size(); })
      .def_prop_ro("infeasible", [](const solver::IlpModel& x) { return x.infeasible; })
      .def_prop_ro("objective_offset", [](const solver::IlpModel& x) { return x.objective_offset; })
      .def("arrays", &ilp_arrays)
      .def("start_vector",
           [](const solver::IlpModel& x, Array1D<const int64_t> solution) -> std::optional<nb::object> {
             if (solution.shape(0) != x.fixed.size()) throw std::invalid_argument("start: wrong solution length");
             std::vector<double> v = x.start_vector(narrow(to_span(solution)));
             if (v.empty() && x.num_cols > 0) return std::nullopt;
             return to_numpy(std::move(v));
           })
      .def("decode", [](const solver::IlpModel& x, Array1D<const double> values) {
        if (static_cast<int64_t>(values.shape(0)) != x.num_cols) throw std::invalid_argument("decode: wrong length");
        std::vector<int32_t> s = x.decode(to_span(values));
        return to_numpy(std::vector<int64_t>(s.begin(), s.end()));
      });
  m.def(
      "build_ilp",
      [](const StrategyProblem& p, int64_t max_nonzeros) {
        nb::gil_scoped_release release;
        return solver::build_ilp(p, max_nonzeros);
      },
      nb::arg("problem"), nb::arg("max_nonzeros"));
}

}  // namespace autopar

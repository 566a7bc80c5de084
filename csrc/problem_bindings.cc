// Python view of the strategy problem (passes/intra_op/strategy_problem.h). The public wrapper is
// autopar.solver.StrategyProblem; this layer only moves flat arrays in and out and maps errors to ValueError.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <stdexcept>

#include "csrc/bindings.h"
#include "csrc/numpy_util.h"
#include "passes/intra_op/strategy_problem.h"

namespace nb = nanobind;

namespace autopar {
namespace {

StrategyProblem from_flat(std::string name, Array1D<const int64_t> interval_start,
                          Array1D<const int64_t> interval_end, Array1D<const int64_t> strategy_offset,
                          Array1D<const double> node_cost, Array1D<const int64_t> usage_offset,
                          Array1D<const int64_t> node_usage, Array1D<const int64_t> edge_u,
                          Array1D<const int64_t> edge_v, Array1D<const int64_t> edge_offset,
                          Array1D<const double> edge_cost, std::optional<int64_t> usage_limit) {
  StrategyProblem p;
  p.name = std::move(name);
  p.interval_start = to_vector(interval_start);
  p.interval_end = to_vector(interval_end);
  if (usage_offset.shape(0) != strategy_offset.shape(0)) {
    throw std::invalid_argument("node_usages has " + std::to_string(usage_offset.shape(0) - 1) +
                                " arrays but node_costs has " + std::to_string(strategy_offset.shape(0) - 1));
  }
  for (size_t i = 0; i + 1 < strategy_offset.shape(0); ++i) {
    const int64_t nc = strategy_offset(i + 1) - strategy_offset(i),
                  nu = usage_offset(i + 1) - usage_offset(i);
    if (nc != nu) {
      throw std::invalid_argument("node " + std::to_string(i) + " has " + std::to_string(nc) + " costs but " +
                                  std::to_string(nu) + " usages");
    }
  }
  if (strategy_offset.shape(0) != interval_start.shape(0) + 1) {
    throw std::invalid_argument("node_costs has " + std::to_string(strategy_offset.shape(0) - 1) +
                                " arrays but intervals has " + std::to_string(interval_start.shape(0)) +
                                " rows");
  }
  p.strategy_offset = to_vector(strategy_offset);
  p.node_cost = to_vector(node_cost);
  p.node_usage = to_vector(node_usage);
  if (edge_offset.shape(0) != edge_u.shape(0) + 1) {
    throw std::invalid_argument("edge_costs has " + std::to_string(edge_offset.shape(0) - 1) +
                                " arrays but edges has " + std::to_string(edge_u.shape(0)) + " rows");
  }
  assign_edges(p, to_span(edge_u), to_span(edge_v));
  p.edge_offset = to_vector(edge_offset);
  p.edge_cost = to_vector(edge_cost);
  if (usage_limit && *usage_limit < 0) {
    throw std::invalid_argument("usage_limit must be >= 0, got " + std::to_string(*usage_limit));
  }
  p.usage_limit = usage_limit.value_or(kNoUsageLimit);
  p.finalize();
  return p;
}

// The flat arrays of a problem, copied into numpy once; the fields are those of StrategyProblem.
struct ProblemArrays {
  nb::object interval_start, interval_end, strategy_offset, node_cost, node_usage, edge_u, edge_v,
      edge_offset, edge_cost;
  int64_t num_nodes = 0, num_edges = 0;
};

ProblemArrays arrays_of(const StrategyProblem& p) {
  ProblemArrays a;
  a.interval_start = to_numpy(p.interval_start);
  a.interval_end = to_numpy(p.interval_end);
  a.strategy_offset = to_numpy(p.strategy_offset);
  a.node_cost = to_numpy(p.node_cost);
  a.node_usage = to_numpy(p.node_usage);
  a.edge_u = to_numpy(p.edge_u);
  a.edge_v = to_numpy(p.edge_v);
  a.edge_offset = to_numpy(p.edge_offset);
  a.edge_cost = to_numpy(p.edge_cost);
  a.num_nodes = p.num_nodes();
  a.num_edges = p.num_edges();
  return a;
}

void bind_problem_arrays(nb::module_& m) {
  nb::class_<ProblemArrays>(m, "ProblemArrays",
                            "Copies of a StrategyProblem's flat arrays (numpy, read-only attributes).")
      .def_ro("interval_start", &ProblemArrays::interval_start, "int64[N]: first moment each node is live.")
      .def_ro("interval_end", &ProblemArrays::interval_end, "int64[N]: end (exclusive) of each liveness.")
      .def_ro("strategy_offset", &ProblemArrays::strategy_offset,
              "int64[N+1]: node i's strategies are [offset[i], offset[i+1]) of node_cost/node_usage.")
      .def_ro("node_cost", &ProblemArrays::node_cost, "float64: cost of each strategy, flat.")
      .def_ro("node_usage", &ProblemArrays::node_usage, "int64: usage of each strategy, flat.")
      .def_ro("edge_u", &ProblemArrays::edge_u, "int32[E]: first endpoint of each edge.")
      .def_ro("edge_v", &ProblemArrays::edge_v, "int32[E]: second endpoint of each edge.")
      .def_ro("edge_offset", &ProblemArrays::edge_offset,
              "int64[E+1]: edge e's cost table is [offset[e], offset[e+1]) of edge_cost.")
      .def_ro("edge_cost", &ProblemArrays::edge_cost,
              "float64: row-major |S_u| x |S_v| table per edge, flat.")
      .def("__repr__", [](const ProblemArrays& a) {
        return "ProblemArrays(num_nodes=" + std::to_string(a.num_nodes) +
               ", num_edges=" + std::to_string(a.num_edges) + ")";
      });
}

}  // namespace

void bind_problem(nb::module_& m) {
  m.attr("__version__") = "0.1.0";
  m.attr("INFINITE_COST") = kInfiniteCost;
  bind_problem_arrays(m);
  nb::class_<StrategyProblem>(m, "StrategyProblem",
                              "Strategy problem in the IOPDDL contest's shape (flat arrays, validated).")
      .def_static(
          "from_json_text",
          [](nb::bytes text) { return parse_problem_json(std::string_view(text.c_str(), text.size())); },
          nb::arg("text"), "Parses the contest JSON (already decompressed).")
      .def_static("from_flat", &from_flat, nb::arg("name"), nb::arg("interval_start"),
                  nb::arg("interval_end"), nb::arg("strategy_offset"), nb::arg("node_cost"),
                  nb::arg("usage_offset"), nb::arg("node_usage"), nb::arg("edge_u"), nb::arg("edge_v"),
                  nb::arg("edge_offset"), nb::arg("edge_cost"), nb::arg("usage_limit").none())
      .def_prop_ro("name", [](const StrategyProblem& p) { return p.name; })
      .def_prop_ro("num_nodes", &StrategyProblem::num_nodes)
      .def_prop_ro("num_edges", &StrategyProblem::num_edges)
      .def_prop_ro("usage_limit",
                   [](const StrategyProblem& p) -> std::optional<int64_t> {
                     if (!p.has_usage_limit()) return std::nullopt;
                     return p.usage_limit;
                   })
      .def("num_strategies",
           [](const StrategyProblem& p, int64_t node) {
             if (node < 0 || node >= p.num_nodes()) {
               throw std::out_of_range("node " + std::to_string(node) + " out of range [0, " +
                                       std::to_string(p.num_nodes()) + ")");
             }
             return p.num_strategies(static_cast<int>(node));
           })
      .def(
          "evaluate",
          [](const StrategyProblem& p, Array1D<const int64_t> solution) {
            nb::gil_scoped_release release;
            const Evaluation r = evaluate(p, to_span(solution));
            return std::make_tuple(r.cost, r.peak_usage, r.feasible);
          },
          nb::arg("solution"), "(cost, peak usage, feasible) of a solution.")
      .def("arrays", &arrays_of, "Copies of the flat arrays (a ProblemArrays).");
}

}  // namespace autopar

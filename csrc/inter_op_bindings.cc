// Bindings of the inter-op cores: layer clustering (autopar-cluster-layers) and the stage DP
// (autopar-inter-op). Plain lists in, typed read-only results out; invalid input raises ValueError.
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <tuple>
#include <vector>

#include "csrc/bindings.h"
#include "passes/inter_op/layer_clustering.h"
#include "passes/inter_op/stage_dp.h"

namespace nb = nanobind;

namespace autopar {
namespace {

// The cut of blocks into layers; layer_of_block is a list (converted once, indexed per op by the pass).
struct LayerClustering {
  nb::list layer_of_block;
  double boundary_bytes = 0.0;
  double max_layer_flops = 0.0;
};

LayerClustering cluster_layers(const std::vector<double>& flops,
                               const std::vector<std::tuple<int, double, std::vector<int>>>& values,
                               int num_layers, double eps) {
  layer_clustering::Problem problem;
  problem.flops = flops;
  problem.num_layers = num_layers;
  problem.eps = eps;
  problem.values.reserve(values.size());
  for (const auto& [producer, bytes, consumers] : values)
    problem.values.push_back(layer_clustering::Value{producer, bytes, consumers});
  layer_clustering::Result result;
  {
    nb::gil_scoped_release release;
    result = layer_clustering::cluster(problem);
  }
  LayerClustering out;
  for (int layer : result.layer_of_block) out.layer_of_block.append(layer);
  out.boundary_bytes = result.boundary_bytes;
  out.max_layer_flops = result.max_layer_flops;
  return out;
}

// The stage DP's plan; stages is a list of StageChoice (stage_dp::Stage), converted once.
struct StageDpResult {
  bool feasible = false;
  double latency = stage_dp::kInfinity;
  nb::list stages;
  int tmax_candidates = 0;
  int tmax_evaluated = 0;
};

StageDpResult solve_stages(int num_layers, int num_devices, int num_micro_batches,
                           const std::vector<int>& submesh_devices, int num_configs,
                           const std::vector<double>& cost, const std::vector<int>& max_succeeding_stages,
                           double imbalance_tolerance, int max_stages) {
  stage_dp::Problem problem;
  problem.num_layers = num_layers;
  problem.num_devices = num_devices;
  problem.num_micro_batches = num_micro_batches;
  problem.submesh_devices = submesh_devices;
  problem.num_configs = num_configs;
  problem.cost = cost;
  problem.max_succeeding_stages = max_succeeding_stages;
  problem.imbalance_tolerance = imbalance_tolerance;
  problem.max_stages = max_stages;
  stage_dp::Result result;
  {
    nb::gil_scoped_release release;
    result = stage_dp::solve(problem);
  }
  StageDpResult out;
  out.feasible = result.feasible;
  out.latency = result.latency;
  for (const auto& s : result.stages) out.stages.append(nb::cast(s, nb::rv_policy::copy));
  out.tmax_candidates = result.tmax_candidates;
  out.tmax_evaluated = result.tmax_evaluated;
  return out;
}

std::string float_repr(double x) { return nb::repr(nb::float_(x)).c_str(); }

void bind_results(nb::module_& m) {
  nb::class_<LayerClustering>(m, "LayerClusteringResult",
                              "A cut of blocks into layers (read-only attributes).")
      .def_ro("layer_of_block", &LayerClustering::layer_of_block, "list[int]: the layer of each block.")
      .def_ro("boundary_bytes", &LayerClustering::boundary_bytes,
              "Sum over layers of the bytes they read from earlier layers.")
      .def_ro("max_layer_flops", &LayerClustering::max_layer_flops, "FLOPs of the heaviest layer.")
      .def("__repr__", [](const LayerClustering& r) {
        return "LayerClusteringResult(num_blocks=" + std::to_string(nb::len(r.layer_of_block)) +
               ", boundary_bytes=" + float_repr(r.boundary_bytes) +
               ", max_layer_flops=" + float_repr(r.max_layer_flops) + ")";
      });
  nb::class_<stage_dp::Stage>(m, "StageChoice", "One stage of a StageDpResult (read-only attributes).")
      .def_ro("start_layer", &stage_dp::Stage::start_layer, "First layer (inclusive).")
      .def_ro("end_layer", &stage_dp::Stage::end_layer, "End layer (exclusive).")
      .def_ro("submesh", &stage_dp::Stage::submesh, "Index into submesh_devices.")
      .def_ro("config", &stage_dp::Stage::config, "Index of the logical-mesh config.")
      .def_ro("cost", &stage_dp::Stage::cost, "The stage's cost per micro-batch (seconds).")
      .def("__repr__", [](const stage_dp::Stage& s) {
        return "StageChoice(start_layer=" + std::to_string(s.start_layer) +
               ", end_layer=" + std::to_string(s.end_layer) + ", submesh=" + std::to_string(s.submesh) +
               ", config=" + std::to_string(s.config) + ", cost=" + float_repr(s.cost) + ")";
      });
  nb::class_<StageDpResult>(m, "StageDpResult", "The stage DP's result (read-only attributes).")
      .def_ro("feasible", &StageDpResult::feasible, "Whether any plan fits.")
      .def_ro("latency", &StageDpResult::latency, "sum + (B - 1) * max over the chosen stages' costs.")
      .def_ro("stages", &StageDpResult::stages, "list[StageChoice], in layer order (empty when infeasible).")
      .def_ro("tmax_candidates", &StageDpResult::tmax_candidates,
              "Distinct stage costs considered as the slowest stage.")
      .def_ro("tmax_evaluated", &StageDpResult::tmax_evaluated, "How many DP runs the pruning left.")
      .def("__repr__", [](const StageDpResult& p) {
        return "StageDpResult(feasible=" + std::string(p.feasible ? "True" : "False") +
               ", latency=" + float_repr(p.latency) + ", stages=" + std::to_string(nb::len(p.stages)) + ")";
      });
}

}  // namespace

void bind_inter_op(nb::module_& m) {
  bind_results(m);
  m.def("cluster_layers", &cluster_layers, nb::arg("flops"), nb::arg("values"), nb::arg("num_layers"),
        nb::arg("eps"),
        "Cuts blocks into num_layers contiguous layers of balanced FLOPs with the fewest boundary bytes.\n"
        "values: (producer block, bytes, consumer blocks). Returns a LayerClusteringResult.");
  m.def("min_max_layer_flops", &layer_clustering::min_max_layer_flops, nb::arg("flops"),
        nb::arg("num_layers"), "The smallest possible largest-layer FLOPs of a cut into num_layers layers.");
  m.def("solve_stages", &solve_stages, nb::arg("num_layers"), nb::arg("num_devices"),
        nb::arg("num_micro_batches"), nb::arg("submesh_devices"), nb::arg("num_configs"), nb::arg("cost"),
        nb::arg("max_succeeding_stages"), nb::arg("imbalance_tolerance") = stage_dp::kInfinity,
        nb::arg("max_stages") = 0,
        "Alpa's stage DP. cost/max_succeeding_stages are flat [start][end][submesh][config]. Returns a "
        "StageDpResult.");
}

}  // namespace autopar

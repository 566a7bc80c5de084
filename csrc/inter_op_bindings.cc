// Bindings of the inter-op cores: layer clustering (autopar-cluster-layers) and the stage DP
// (autopar-inter-op). Plain lists in, plain dicts out; invalid input raises ValueError.
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

nb::dict cluster_layers(const std::vector<double>& flops,
                        const std::vector<std::tuple<int, double, std::vector<int>>>& values, int num_layers,
                        double eps) {
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
  nb::dict out;
  out["layer_of_block"] = result.layer_of_block;
  out["boundary_bytes"] = result.boundary_bytes;
  out["max_layer_flops"] = result.max_layer_flops;
  return out;
}

nb::dict solve_stages(int num_layers, int num_devices, int num_micro_batches,
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
  nb::list stages;
  for (const auto& s : result.stages)
    stages.append(nb::make_tuple(s.start_layer, s.end_layer, s.submesh, s.config, s.cost));
  nb::dict out;
  out["feasible"] = result.feasible;
  out["latency"] = result.latency;
  out["stages"] = stages;
  out["tmax_candidates"] = result.tmax_candidates;
  out["tmax_evaluated"] = result.tmax_evaluated;
  return out;
}

}  // namespace

void bind_inter_op(nb::module_& m) {
  m.def("cluster_layers", &cluster_layers, nb::arg("flops"), nb::arg("values"), nb::arg("num_layers"),
        nb::arg("eps"),
        "Cuts blocks into num_layers contiguous layers of balanced FLOPs with the fewest boundary bytes.\n"
        "values: (producer block, bytes, consumer blocks). Returns {layer_of_block, boundary_bytes, "
        "max_layer_flops}.");
  m.def("min_max_layer_flops", &layer_clustering::min_max_layer_flops, nb::arg("flops"),
        nb::arg("num_layers"), "The smallest possible largest-layer FLOPs of a cut into num_layers layers.");
  m.def("solve_stages", &solve_stages, nb::arg("num_layers"), nb::arg("num_devices"),
        nb::arg("num_micro_batches"), nb::arg("submesh_devices"), nb::arg("num_configs"), nb::arg("cost"),
        nb::arg("max_succeeding_stages"), nb::arg("imbalance_tolerance") = stage_dp::kInfinity,
        nb::arg("max_stages") = 0,
        "Alpa's stage DP. cost/max_succeeding_stages are flat [start][end][submesh][config]. Returns "
        "{feasible, latency, stages: [(start, end_exclusive, submesh, config, cost)], tmax_candidates, "
        "tmax_evaluated}.");
}

}  // namespace autopar

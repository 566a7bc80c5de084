// Bindings of the cross-mesh resharding core (passes/inter_op/reshard): typed, read-only results;
// invalid input raises ValueError naming what does not fit.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <vector>

#include "csrc/bindings.h"
#include "passes/inter_op/reshard.h"

namespace nb = nanobind;

namespace autopar {

void bind_reshard(nb::module_& m) {
  using namespace reshard;
  nb::class_<Slice>(m, "Slice", "[start, limit) per tensor dim, in global coordinates.")
      .def_ro("start", &Slice::start)
      .def_ro("limit", &Slice::limit);
  nb::class_<Send>(m, "Send", "One slice sent from one device to another (or copied on one device).")
      .def_ro("src_device", &Send::src_device)
      .def_ro("dst_device", &Send::dst_device)
      .def_ro("slice", &Send::slice)
      .def_ro("bytes", &Send::bytes);
  nb::class_<Plan>(m, "ReshardPlan", "How a tensor moves from one mesh layout to another.")
      .def_ro("sends", &Plan::sends)
      .def_ro("gather_groups", &Plan::gather_groups, "destination devices that all-gather one tile")
      .def_ro("bytes_between_devices", &Plan::bytes_between_devices)
      .def_ro("seconds", &Plan::seconds, "alpha-beta estimate");
  m.def(
      "plan_reshard",
      [](const std::vector<int64_t>& shape, int64_t itemsize, const std::vector<int64_t>& src_mesh,
         const std::vector<int64_t>& src_devices, const std::vector<std::vector<int>>& src_dim_axes,
         const std::vector<int64_t>& dst_mesh, const std::vector<int64_t>& dst_devices,
         const std::vector<std::vector<int>>& dst_dim_axes, bool local_all_gather, double alpha,
         double beta) {
        Layout src{src_mesh, src_devices, src_dim_axes}, dst{dst_mesh, dst_devices, dst_dim_axes};
        nb::gil_scoped_release release;
        return plan(shape, itemsize, src, dst, local_all_gather, alpha, beta);
      },
      nb::arg("shape"), nb::arg("itemsize"), nb::arg("src_mesh"), nb::arg("src_devices"),
      nb::arg("src_dim_axes"), nb::arg("dst_mesh"), nb::arg("dst_devices"), nb::arg("dst_dim_axes"),
      nb::arg("local_all_gather") = true, nb::arg("alpha") = 0.0, nb::arg("beta") = 0.0,
      "The sends that move a tensor from one mesh layout to another (dim_axes: per dim, the mesh axes "
      "splitting it, major to minor).");
  m.def(
      "reshard_tile",
      [](const std::vector<int64_t>& shape, const std::vector<int64_t>& mesh,
         const std::vector<int64_t>& devices, const std::vector<std::vector<int>>& dim_axes,
         int64_t position) { return tile(shape, Layout{mesh, devices, dim_axes}, position); },
      nb::arg("shape"), nb::arg("mesh"), nb::arg("devices"), nb::arg("dim_axes"), nb::arg("position"),
      "The tile the mesh position (row-major) holds.");
}

}  // namespace autopar

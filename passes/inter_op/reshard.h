// Cross-mesh resharding plans (the transfers between pipeline stages; Alpa, OSDI'22 sec. 6, and "On
// Optimizing the Communication of Model Parallelism", MLSys'23): how a tensor laid out on one device mesh
// reaches its layout on another. For every destination tile, which source devices send which slices; senders
// are balanced over a tile's replicas; when the destination replicates a tile, each slice can be sent once
// and all-gathered inside the destination mesh. Plain data in and out; the alpha-beta time of the plan
// is what the stage DP and the plan report price.
#pragma once

#include <cstdint>
#include <vector>

namespace autopar::reshard {

// A tensor's layout on a mesh: device_ids lists the mesh's devices row-major over mesh_shape, and
// dim_axes[d] the mesh axes that split tensor dim d, major to minor (empty: not split).
struct Layout {
  std::vector<int64_t> mesh_shape;
  std::vector<int64_t> device_ids;
  std::vector<std::vector<int>> dim_axes;
};

struct Slice {
  std::vector<int64_t> start, limit;  // [start, limit) per tensor dim
};

struct Send {
  int64_t src_device = 0, dst_device = 0;
  Slice slice;  // in global tensor coordinates
  int64_t bytes = 0;
};

struct Plan {
  std::vector<Send> sends;
  // Destination devices holding the same tile that all-gather it after receiving a part each (empty
  // unless local_all_gather split a replicated tile).
  std::vector<std::vector<int64_t>> gather_groups;
  int64_t bytes_between_devices = 0;  // bytes that cross from one device to another (local copies free)
  double seconds = 0.0;               // alpha-beta estimate: the slowest receiver, then the all-gathers
};

// Throws std::invalid_argument naming what does not fit (a dim not divisible by its split, an axis
// used twice, device counts that do not match the mesh).
Plan plan(const std::vector<int64_t>& shape, int64_t itemsize, const Layout& src, const Layout& dst,
          bool local_all_gather, double alpha, double beta);

// The tile a mesh position holds (for tests and the runtime).
Slice tile(const std::vector<int64_t>& shape, const Layout& layout, int64_t position);

}  // namespace autopar::reshard

#include "passes/inter_op/reshard.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>

namespace autopar::reshard {
namespace {

void check(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

int64_t product(const std::vector<int64_t>& xs) {
  int64_t p = 1;
  for (int64_t x : xs) p *= x;
  return p;
}

void validate(const std::vector<int64_t>& shape, const Layout& layout, const char* which) {
  const std::string w(which);
  check(product(layout.mesh_shape) == static_cast<int64_t>(layout.device_ids.size()),
        w + " layout: " + std::to_string(layout.device_ids.size()) + " devices for a mesh of " +
            std::to_string(product(layout.mesh_shape)));
  check(layout.dim_axes.size() == shape.size(), w + " layout: " + std::to_string(layout.dim_axes.size()) +
                                                    " dims for a rank-" + std::to_string(shape.size()) +
                                                    " tensor");
  std::vector<bool> used(layout.mesh_shape.size(), false);
  for (size_t d = 0; d < shape.size(); ++d) {
    int64_t parts = 1;
    for (int axis : layout.dim_axes[d]) {
      check(axis >= 0 && axis < static_cast<int>(used.size()) && !used[axis],
            w + " layout: mesh axis " + std::to_string(axis) + " is missing or used twice");
      used[axis] = true;
      parts *= layout.mesh_shape[axis];
    }
    check(shape[d] % parts == 0, w + " layout: dim " + std::to_string(d) + " of size " +
                                     std::to_string(shape[d]) + " does not split into " +
                                     std::to_string(parts));
  }
}

int64_t volume(const Slice& s) {
  int64_t v = 1;
  for (size_t d = 0; d < s.start.size(); ++d) v *= s.limit[d] - s.start[d];
  return v;
}

bool intersect(const Slice& a, const Slice& b, Slice& out) {
  out.start.resize(a.start.size());
  out.limit.resize(a.start.size());
  for (size_t d = 0; d < a.start.size(); ++d) {
    out.start[d] = std::max(a.start[d], b.start[d]);
    out.limit[d] = std::min(a.limit[d], b.limit[d]);
    if (out.start[d] >= out.limit[d]) return false;
  }
  return true;
}

// Splits `s` into `parts` equal pieces along its largest dim that `parts` divides (false if none).
bool split(const Slice& s, int64_t parts, std::vector<Slice>& out) {
  int best = -1;
  for (size_t d = 0; d < s.start.size(); ++d) {
    const int64_t n = s.limit[d] - s.start[d];
    if (n % parts == 0 && (best < 0 || n > s.limit[best] - s.start[best])) best = static_cast<int>(d);
  }
  if (best < 0) return false;
  const int64_t step = (s.limit[best] - s.start[best]) / parts;
  for (int64_t i = 0; i < parts; ++i) {
    Slice piece = s;
    piece.start[best] = s.start[best] + i * step;
    piece.limit[best] = piece.start[best] + step;
    out.push_back(piece);
  }
  return true;
}

}  // namespace

Slice tile(const std::vector<int64_t>& shape, const Layout& layout, int64_t position) {
  // Mesh coordinates of `position` (row-major).
  std::vector<int64_t> coord(layout.mesh_shape.size());
  for (int a = static_cast<int>(layout.mesh_shape.size()) - 1; a >= 0; --a) {
    coord[a] = position % layout.mesh_shape[a];
    position /= layout.mesh_shape[a];
  }
  Slice s;
  for (size_t d = 0; d < shape.size(); ++d) {
    int64_t index = 0, parts = 1;
    for (int axis : layout.dim_axes[d]) {  // major to minor: mixed radix
      index = index * layout.mesh_shape[axis] + coord[axis];
      parts *= layout.mesh_shape[axis];
    }
    const int64_t chunk = shape[d] / parts;
    s.start.push_back(index * chunk);
    s.limit.push_back((index + 1) * chunk);
  }
  return s;
}

Plan plan(const std::vector<int64_t>& shape, int64_t itemsize, const Layout& src, const Layout& dst,
          bool local_all_gather, double alpha, double beta) {
  validate(shape, src, "source");
  validate(shape, dst, "destination");
  // Source tiles and the devices holding each (its replicas), in device order.
  std::map<std::vector<int64_t>, std::pair<Slice, std::vector<int64_t>>> sources;
  for (size_t p = 0; p < src.device_ids.size(); ++p) {
    Slice t = tile(shape, src, static_cast<int64_t>(p));
    auto& entry = sources[t.start];
    entry.first = t;
    entry.second.push_back(src.device_ids[p]);
  }
  // Destination tiles and the devices needing each.
  std::map<std::vector<int64_t>, std::pair<Slice, std::vector<int64_t>>> targets;
  for (size_t p = 0; p < dst.device_ids.size(); ++p) {
    Slice t = tile(shape, dst, static_cast<int64_t>(p));
    auto& entry = targets[t.start];
    entry.first = t;
    entry.second.push_back(dst.device_ids[p]);
  }
  Plan out;
  std::map<int64_t, int64_t> sent;                      // bytes each source device sends so far
  std::map<int64_t, std::pair<int64_t, int64_t>> recv;  // per receiver: messages, bytes
  auto send = [&](const Slice& piece, int64_t to) {
    for (const auto& [key, source] : sources) {
      Slice overlap;
      if (!intersect(source.first, piece, overlap)) continue;
      const auto& replicas = source.second;
      int64_t from = replicas.front();
      if (std::find(replicas.begin(), replicas.end(), to) != replicas.end()) {
        from = to;  // a local copy costs nothing
      } else {
        for (int64_t r : replicas)
          if (sent[r] < sent[from]) from = r;  // balance senders over the replicas
      }
      const int64_t bytes = volume(overlap) * itemsize;
      out.sends.push_back(Send{from, to, overlap, bytes});
      if (from != to) {
        sent[from] += bytes;
        out.bytes_between_devices += bytes;
        recv[to].first += 1;
        recv[to].second += bytes;
      }
    }
  };
  double gather_seconds = 0.0;
  for (const auto& [key, target] : targets) {
    const auto& [whole, devices] = target;
    std::vector<Slice> parts;
    const int64_t g = static_cast<int64_t>(devices.size());
    if (local_all_gather && g > 1 && split(whole, g, parts)) {
      for (int64_t i = 0; i < g; ++i) send(parts[i], devices[i]);
      out.gather_groups.push_back(devices);
      const double tile_bytes = static_cast<double>(volume(whole) * itemsize);
      gather_seconds = std::max(gather_seconds, (g - 1) * alpha + beta * tile_bytes * (g - 1) / g);
    } else {
      for (int64_t d : devices) send(whole, d);
    }
  }
  double receive_seconds = 0.0;
  for (const auto& [device, load] : recv)
    receive_seconds = std::max(receive_seconds, load.first * alpha + beta * static_cast<double>(load.second));
  out.seconds = receive_seconds + gather_seconds;
  return out;
}

}  // namespace autopar::reshard

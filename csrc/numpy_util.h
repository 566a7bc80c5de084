// Small helpers for moving flat arrays between numpy and std::vector in the bindings.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <span>
#include <type_traits>
#include <vector>

namespace autopar {

// A contiguous 1-D CPU array; the Python wrappers convert with np.ascontiguousarray(dtype=...) first.
template <typename T>
using Array1D = nanobind::ndarray<T, nanobind::ndim<1>, nanobind::c_contig, nanobind::device::cpu>;

template <typename T>
std::span<T> to_span(const Array1D<T>& a) {
  return {a.data(), a.shape(0)};
}

template <typename T>
std::vector<std::remove_const_t<T>> to_vector(const Array1D<T>& a) {
  return {a.data(), a.data() + a.shape(0)};
}

// Hands a copy of `values` to numpy; the capsule frees it when the array dies.
template <typename T>
nanobind::object to_numpy(std::vector<T> values) {
  auto* owned = new std::vector<T>(std::move(values));
  nanobind::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nanobind::cast(
      nanobind::ndarray<nanobind::numpy, T, nanobind::ndim<1>>(owned->data(), {owned->size()}, owner));
}

}  // namespace autopar

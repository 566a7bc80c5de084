// Each part of autopar._core binds its own API in its own file; module.cc calls them in order.
#pragma once

#include <nanobind/nanobind.h>

namespace autopar {

void bind_problem(nanobind::module_& m);
void bind_solver(nanobind::module_& m);
void bind_inter_op(nanobind::module_& m);
void bind_schedule(nanobind::module_& m);
void bind_reshard(nanobind::module_& m);

}  // namespace autopar

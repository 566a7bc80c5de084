// autopar._core: the algorithm cores of autopar (strategy problems, solvers, stage DP, schedules) on
// plain data. No MLIR here: IR is read and written by the Python passes (see docs/DESIGN.md).
#include "csrc/bindings.h"

NB_MODULE(_core, m) {
  m.doc() = "autopar's C++ core: strategy problems, solvers, stage DP, transfer plans and schedules";
  autopar::bind_problem(m);
  autopar::bind_solver(m);
}

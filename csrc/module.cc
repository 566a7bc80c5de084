// autopar._core: the algorithm cores of autopar (strategy problems, solvers, layer clustering, stage DP)
// on plain data. No MLIR here: IR is read and written by the Python passes, through the attributes of
// python/autopar/ir/attrs.py (docs/passes_and_driver.md, "The IR contract").
#include "csrc/bindings.h"

NB_MODULE(_core, m) {
  m.doc() =
      "autopar's C++ core: strategy problems, solvers, layer clustering, the stage DP and pipeline schedules";
  autopar::bind_problem(m);
  autopar::bind_solver(m);
  autopar::bind_inter_op(m);
  autopar::bind_schedule(m);
}

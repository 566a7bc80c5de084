// autopar._core: Python bindings of autopar's C++ pass cores on plain data: the strategy problem, presolve,
// heuristic and group ILP of the intra-op pass (passes/intra_op/), layer clustering, the stage DP and
// cross-mesh reshard plans of the inter-op pass (passes/inter_op/), the pipeline schedules of
// autopar-schedule (passes/schedule/). csrc/ holds only these bindings; the cores never include csrc/. No
// MLIR here: IR is read and written by the Python passes, through the attributes of
// python/autopar/ir/attrs.py (docs/passes_and_driver.md, "The IR contract").
#include "csrc/bindings.h"

NB_MODULE(_core, m) {
  m.doc() =
      "autopar's C++ core: strategy problems, solvers, layer clustering, the stage DP and pipeline schedules";
  autopar::bind_problem(m);
  autopar::bind_solver(m);
  autopar::bind_inter_op(m);
  autopar::bind_schedule(m);
  autopar::bind_reshard(m);
}

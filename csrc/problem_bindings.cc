// Placeholder until the strategy-problem data model lands (issue: foundation, item 2).
#include "csrc/bindings.h"

namespace autopar {
void bind_problem(nanobind::module_& m) { m.attr("__version__") = "0.1.0"; }
}  // namespace autopar

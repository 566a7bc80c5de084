// Bindings of the schedule core (autopar-schedule): typed, read-only results; invalid input raises
// ValueError naming the argument.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>

#include "csrc/bindings.h"
#include "passes/schedule/schedule.h"

namespace nb = nanobind;

namespace autopar {
namespace {

const char* part_name(schedule::Part part) {
  switch (part) {
    case schedule::Part::kForward:
      return "forward";
    case schedule::Part::kBackward:
      return "backward";
    case schedule::Part::kBackwardInput:
      return "backward_input";
    case schedule::Part::kBackwardWeight:
      return "backward_weight";
    case schedule::Part::kApply:
      return "apply";
  }
  return "?";
}

}  // namespace

void bind_schedule(nb::module_& m) {
  using namespace schedule;
  nb::class_<Instruction>(m, "Instruction",
                          "One step of a mesh's program: run `part` of `stage` for `micro_batch`.")
      .def_prop_ro("part", [](const Instruction& i) { return std::string(part_name(i.part)); })
      .def_ro("stage", &Instruction::stage, "virtual stage: chunk * meshes + mesh")
      .def_ro("micro_batch", &Instruction::micro_batch, "-1 for apply")
      .def("__repr__", [](const Instruction& i) {
        return std::string(part_name(i.part)) + "(stage " + std::to_string(i.stage) +
               (i.micro_batch >= 0 ? ", micro-batch " + std::to_string(i.micro_batch) : std::string()) + ")";
      });
  nb::class_<Schedule>(m, "Schedule", "A static program per mesh.")
      .def_ro("name", &Schedule::name)
      .def_ro("meshes", &Schedule::meshes)
      .def_ro("chunks", &Schedule::chunks)
      .def_ro("micro_batches", &Schedule::micro_batches)
      .def_ro("program", &Schedule::program, "per mesh, the instructions in execution order");
  nb::class_<Simulation>(m, "Simulation", "A schedule run under given part durations.")
      .def_ro("start", &Simulation::start)
      .def_ro("end", &Simulation::end)
      .def_ro("makespan", &Simulation::makespan)
      .def_ro("work_per_mesh", &Simulation::work_per_mesh)
      .def_ro("bubble_fraction", &Simulation::bubble_fraction, "(makespan - work) / work")
      .def_ro("max_in_flight", &Simulation::max_in_flight, "per mesh: micro-batches held at once");
  m.def("build_schedule", &build, nb::arg("name"), nb::arg("meshes"), nb::arg("micro_batches"),
        nb::arg("chunks") = 1,
        "The schedule 'gpipe' | '1f1b' | 'interleaved-1f1b' | 'zb-h1' as one program per mesh.");
  m.def(
      "simulate_schedule",
      [](const Schedule& s, double forward, double backward, double backward_weight, double apply) {
        nb::gil_scoped_release release;
        return simulate(s, Durations{forward, backward, backward_weight, apply});
      },
      nb::arg("schedule"), nb::arg("forward") = 1.0, nb::arg("backward") = 1.0,
      nb::arg("backward_weight") = 1.0, nb::arg("apply") = 1.0,
      "Runs each mesh's program in order under these part durations (backward: the input half when the "
      "schedule splits it). Raises RuntimeError if the programs deadlock.");
}

}  // namespace autopar

// Pipeline schedules as static instruction lists, one per mesh (autopar-schedule): which part of which
// (virtual) stage runs for which micro-batch, in what order. GPipe (Huang et al., NeurIPS'19), 1F1B
// (PipeDream-Flush, Narayanan et al., ICML'21; Alpa's default), interleaved 1F1B (Megatron-LM, SC'21) and
// ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR'24). A list scheduler simulates a program
// under given part durations: start times, makespan, bubble and in-flight micro-batches per mesh.
#pragma once

#include <string>
#include <vector>

namespace autopar::schedule {

enum class Part : int {
  kForward = 0,
  kBackward = 1,        // the whole backward of a stage (GPipe, 1F1B, interleaved)
  kBackwardInput = 2,   // ZB-H1: the cotangents the previous stage waits for
  kBackwardWeight = 3,  // ZB-H1: the weight gradients, which nothing downstream waits for
  kApply = 4,           // the optimizer update, once per iteration (micro_batch = -1)
};

struct Instruction {
  Part part = Part::kForward;
  int stage = 0;        // virtual stage: chunk * meshes + mesh (chunk 0 unless interleaved)
  int micro_batch = 0;  // -1 for kApply
};

// Seconds (or any unit) of one micro-batch's part of one stage, the same for every stage.
struct Durations {
  double forward = 1.0;
  double backward = 1.0;         // kBackward; kBackwardInput when split
  double backward_weight = 1.0;  // kBackwardWeight (split schedules only)
  double apply = 1.0;
};

struct Schedule {
  std::string name;
  int meshes = 0;
  int chunks = 1;  // virtual stages per mesh (interleaved 1F1B)
  int micro_batches = 0;
  std::vector<std::vector<Instruction>> program;  // per mesh, in execution order
};

struct Simulation {
  std::vector<std::vector<double>> start;  // per mesh, per instruction
  std::vector<std::vector<double>> end;
  double makespan = 0.0;
  double work_per_mesh = 0.0;      // busy time of one mesh (all meshes carry equal work)
  double bubble_fraction = 0.0;    // (makespan - work) / work
  std::vector<int> max_in_flight;  // per mesh: micro-batches whose activations are held at once
};

// The schedule `name` ("gpipe", "1f1b", "interleaved-1f1b", "zb-h1") for `meshes` meshes and
// `micro_batches` micro-batches; `chunks` > 1 only for interleaved-1f1b, which also needs micro_batches
// to be a multiple of meshes. Throws std::invalid_argument naming the bad argument.
Schedule build(const std::string& name, int meshes, int micro_batches, int chunks = 1);

// Runs every mesh's program in order, each instruction as soon as its mesh is free and its inputs exist
// (forward after the previous stage's forward, backward after the next stage's backward and its own
// forward, weight gradients after the input gradients, apply after the mesh's last backward). Throws
// std::runtime_error if the programs deadlock.
Simulation simulate(const Schedule& schedule, const Durations& durations);

}  // namespace autopar::schedule

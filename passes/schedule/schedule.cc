#include "passes/schedule/schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace autopar::schedule {
namespace {

Instruction forward(int stage, int micro_batch) { return {Part::kForward, stage, micro_batch}; }
Instruction backward(int stage, int micro_batch) { return {Part::kBackward, stage, micro_batch}; }

void check(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

Schedule empty(const std::string& name, int meshes, int micro_batches, int chunks) {
  Schedule s;
  s.name = name;
  s.meshes = meshes;
  s.chunks = chunks;
  s.micro_batches = micro_batches;
  s.program.assign(meshes, {});
  return s;
}

void add_apply(Schedule& s) {
  for (int mesh = 0; mesh < s.meshes; ++mesh)
    for (int chunk = 0; chunk < s.chunks; ++chunk)
      s.program[mesh].push_back({Part::kApply, chunk * s.meshes + mesh, -1});
}

// All forwards, then all backwards (GPipe).
Schedule gpipe(int meshes, int micro_batches) {
  Schedule s = empty("gpipe", meshes, micro_batches, 1);
  for (int mesh = 0; mesh < meshes; ++mesh) {
    for (int m = 0; m < micro_batches; ++m) s.program[mesh].push_back(forward(mesh, m));
    for (int m = 0; m < micro_batches; ++m) s.program[mesh].push_back(backward(mesh, m));
  }
  add_apply(s);
  return s;
}

// 1F1B: a warm-up of (meshes - mesh - 1) forwards, then one forward and one backward in turn, then the
// remaining backwards; a mesh never holds more than (meshes - mesh) micro-batches.
Schedule one_f_one_b(int meshes, int micro_batches) {
  Schedule s = empty("1f1b", meshes, micro_batches, 1);
  for (int mesh = 0; mesh < meshes; ++mesh) {
    auto& program = s.program[mesh];
    const int warmup = std::min(meshes - mesh - 1, micro_batches);
    for (int m = 0; m < warmup; ++m) program.push_back(forward(mesh, m));
    for (int i = 0; i < micro_batches - warmup; ++i) {
      program.push_back(forward(mesh, warmup + i));
      program.push_back(backward(mesh, i));
    }
    for (int m = micro_batches - warmup; m < micro_batches; ++m) program.push_back(backward(mesh, m));
  }
  add_apply(s);
  return s;
}

// Megatron-LM's interleaved 1F1B: each mesh runs `chunks` virtual stages (chunk c of mesh s is stage
// c * meshes + s); forwards go through the chunks in groups of `meshes` micro-batches, backwards through
// the chunks in reverse.
Schedule interleaved(int meshes, int micro_batches, int chunks) {
  check(micro_batches % meshes == 0, "interleaved-1f1b needs micro-batches (" +
                                         std::to_string(micro_batches) +
                                         ") to be a multiple of the meshes (" + std::to_string(meshes) + ")");
  Schedule s = empty("interleaved-1f1b", meshes, micro_batches, chunks);
  const int group = meshes * chunks, total = micro_batches * chunks;
  auto micro = [&](int k) { return (k / group) * meshes + k % meshes; };
  auto forward_chunk = [&](int k) { return (k % group) / meshes; };
  auto backward_chunk = [&](int k) { return chunks - 1 - (k % group) / meshes; };
  for (int mesh = 0; mesh < meshes; ++mesh) {
    auto& program = s.program[mesh];
    int warmup =
        micro_batches == meshes ? total : std::min((meshes - mesh - 1) * 2 + (chunks - 1) * meshes, total);
    auto F = [&](int k) { program.push_back(forward(forward_chunk(k) * meshes + mesh, micro(k))); };
    auto B = [&](int k) { program.push_back(backward(backward_chunk(k) * meshes + mesh, micro(k))); };
    for (int k = 0; k < warmup; ++k) F(k);
    for (int i = 0; i < total - warmup; ++i) {
      F(warmup + i);
      B(i);
    }
    for (int k = total - warmup; k < total; ++k) B(k);
  }
  add_apply(s);
  return s;
}

// ZB-H1: 1F1B over forwards and input gradients (the half of the backward the previous stage waits
// for), with each weight gradient (which nothing waits for) run `mesh` input gradients later: the weight
// gradients a mesh postpones fill the time it would otherwise wait in the cool-down, and every mesh holds
// at most `meshes` micro-batches from forward to weight gradient, 1F1B's peak (on its first mesh). Under
// equal part times the bubble is (meshes - 1) parts, 1F1B's (meshes - 1) (F + B + W) cut to a third.
Schedule zb_h1(int meshes, int micro_batches) {
  Schedule s = empty("zb-h1", meshes, micro_batches, 1);
  for (int mesh = 0; mesh < meshes; ++mesh) {
    auto& program = s.program[mesh];
    const int warmup = std::min(meshes - mesh - 1, micro_batches), lag = mesh;
    int inputs = 0, weights = 0;
    auto input_gradient = [&] {
      program.push_back({Part::kBackwardInput, mesh, inputs++});
      if (inputs - weights > lag) program.push_back({Part::kBackwardWeight, mesh, weights++});
    };
    for (int m = 0; m < warmup; ++m) program.push_back(forward(mesh, m));
    for (int m = warmup; m < micro_batches; ++m) {
      program.push_back(forward(mesh, m));
      input_gradient();
    }
    while (inputs < micro_batches) input_gradient();
    while (weights < micro_batches) program.push_back({Part::kBackwardWeight, mesh, weights++});
  }
  add_apply(s);
  return s;
}

double duration(Part part, const Durations& d) {
  switch (part) {
    case Part::kForward:
      return d.forward;
    case Part::kBackward:
    case Part::kBackwardInput:
      return d.backward;
    case Part::kBackwardWeight:
      return d.backward_weight;
    case Part::kApply:
      return d.apply;
  }
  return 0.0;
}

}  // namespace

Schedule build(const std::string& name, int meshes, int micro_batches, int chunks) {
  check(meshes >= 1, "meshes must be >= 1, got " + std::to_string(meshes));
  check(micro_batches >= 1, "micro-batches must be >= 1, got " + std::to_string(micro_batches));
  check(chunks >= 1, "chunks must be >= 1, got " + std::to_string(chunks));
  check(chunks == 1 || name == "interleaved-1f1b",
        "chunks > 1 needs the interleaved-1f1b schedule, not " + name);
  if (name == "gpipe") return gpipe(meshes, micro_batches);
  if (name == "1f1b") return one_f_one_b(meshes, micro_batches);
  if (name == "interleaved-1f1b") return interleaved(meshes, micro_batches, chunks);
  if (name == "zb-h1") return zb_h1(meshes, micro_batches);
  throw std::invalid_argument("unknown schedule '" + name + "': use gpipe, 1f1b, interleaved-1f1b or zb-h1");
}

Simulation simulate(const Schedule& schedule, const Durations& durations) {
  const int S = schedule.meshes, V = schedule.meshes * schedule.chunks, B = schedule.micro_batches;
  const double unknown = std::numeric_limits<double>::quiet_NaN();
  // end[part][stage][micro-batch]
  std::vector<std::vector<std::vector<double>>> end(
      5, std::vector<std::vector<double>>(V, std::vector<double>(B, unknown)));
  bool split = false;
  for (const auto& program : schedule.program)
    for (const auto& ins : program) split = split || ins.part == Part::kBackwardInput;
  const Part backward_part = split ? Part::kBackwardInput : Part::kBackward;
  auto ready = [&](Part part, int stage, int m, double& at) {
    auto need = [&](Part p, int v) {
      const double e = end[static_cast<int>(p)][v][m];
      if (std::isnan(e)) return false;
      at = std::max(at, e);
      return true;
    };
    switch (part) {
      case Part::kForward:
        return stage == 0 || need(Part::kForward, stage - 1);
      case Part::kBackward:
      case Part::kBackwardInput:
        return need(Part::kForward, stage) && (stage == V - 1 || need(backward_part, stage + 1));
      case Part::kBackwardWeight:
        return need(Part::kBackwardInput, stage);
      case Part::kApply:
        return true;  // last in its mesh's program
    }
    return false;
  };

  Simulation sim;
  sim.start.assign(S, {});
  sim.end.assign(S, {});
  std::vector<size_t> next(S, 0);
  std::vector<double> free_at(S, 0.0);
  size_t total = 0, done = 0;
  for (const auto& program : schedule.program) total += program.size();
  while (done < total) {
    bool progress = false;
    for (int mesh = 0; mesh < S; ++mesh) {
      const auto& program = schedule.program[mesh];
      while (next[mesh] < program.size()) {
        const Instruction& ins = program[next[mesh]];
        double at = free_at[mesh];
        if (!ready(ins.part, ins.stage, ins.micro_batch, at)) break;
        const double finish = at + duration(ins.part, durations);
        sim.start[mesh].push_back(at);
        sim.end[mesh].push_back(finish);
        if (ins.part != Part::kApply) end[static_cast<int>(ins.part)][ins.stage][ins.micro_batch] = finish;
        free_at[mesh] = finish;
        ++next[mesh];
        ++done;
        progress = true;
      }
    }
    if (!progress) throw std::runtime_error("the schedule '" + schedule.name + "' deadlocks");
  }
  sim.makespan = *std::max_element(free_at.begin(), free_at.end());
  const double per_micro_batch =
      durations.forward + durations.backward + (split ? durations.backward_weight : 0.0);
  sim.work_per_mesh = schedule.chunks * B * per_micro_batch + schedule.chunks * durations.apply;
  sim.bubble_fraction = (sim.makespan - sim.work_per_mesh) / sim.work_per_mesh;
  const Part releases = split ? Part::kBackwardWeight : Part::kBackward;
  for (const auto& program : schedule.program) {
    int held = 0, most = 0;
    for (const auto& ins : program) {
      if (ins.part == Part::kForward) most = std::max(most, ++held);
      if (ins.part == releases) --held;
    }
    sim.max_in_flight.push_back(most);
  }
  return sim;
}

}  // namespace autopar::schedule

"""The schedule core (passes/schedule): each schedule's program per mesh, checked as Alpa's and the
papers' own claims state them, under the list-scheduling simulator."""

from __future__ import annotations

import collections

import pytest

from autopar import _core

SIZES = [(1, 1), (1, 4), (2, 2), (2, 8), (3, 9), (4, 4), (4, 8), (4, 16), (8, 8), (8, 16)]


def every_part_once(schedule, parts):
    seen = collections.Counter()
    for mesh, program in enumerate(schedule.program):
        for ins in program:
            assert ins.stage % schedule.meshes == mesh, (mesh, ins)
            seen[(ins.part, ins.stage, ins.micro_batch)] += 1
        assert program[-1].part == "apply"
    stages = schedule.meshes * schedule.chunks
    want = {(p, v, m) for p in parts for v in range(stages) for m in range(schedule.micro_batches)}
    want |= {("apply", v, -1) for v in range(stages)}
    assert set(seen) == want and set(seen.values()) == {1}


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("meshes", "micro_batches"), SIZES)
def test_gpipe_and_1f1b_take_2_stages_plus_micro_batches_minus_1_plus_1_clocks(name, meshes, micro_batches):
    schedule = _core.build_schedule(name, meshes, micro_batches)
    every_part_once(schedule, ["forward", "backward"])
    sim = _core.simulate_schedule(schedule)  # every part one clock
    assert sim.makespan == 2 * (meshes + micro_batches - 1) + 1
    if name == "1f1b":  # stage i holds at most (stages - i) micro-batches
        assert sim.max_in_flight == [min(meshes - i, micro_batches) for i in range(meshes)]
    else:
        assert sim.max_in_flight == [micro_batches] * meshes


@pytest.mark.parametrize(("meshes", "micro_batches"), SIZES)
def test_zb_h1_cuts_the_bubble_to_a_third_at_1f1b_peak_memory(meshes, micro_batches):
    schedule = _core.build_schedule("zb-h1", meshes, micro_batches)
    every_part_once(schedule, ["forward", "backward_input", "backward_weight"])
    sim = _core.simulate_schedule(schedule, forward=1, backward=1, backward_weight=1, apply=0)
    work = 3 * micro_batches
    assert (sim.makespan - work) / work == pytest.approx((meshes - 1) / (3 * micro_batches))
    assert max(sim.max_in_flight) <= meshes
    # 1F1B on the same parts (a whole backward = input + weight halves) has three times the bubble.
    one_f = _core.simulate_schedule(_core.build_schedule("1f1b", meshes, micro_batches), backward=2, apply=0)
    assert one_f.makespan - work == 3 * (sim.makespan - work)


@pytest.mark.parametrize(("meshes", "micro_batches", "chunks"), [(2, 4, 2), (4, 8, 2), (4, 8, 4), (4, 16, 2)])
def test_interleaved_1f1b_divides_the_bubble_by_its_chunks(meshes, micro_batches, chunks):
    schedule = _core.build_schedule("interleaved-1f1b", meshes, micro_batches, chunks)
    every_part_once(schedule, ["forward", "backward"])
    # A chunk is 1/chunks of a stage: forward 1/chunks, backward 2/chunks of the stage's parts.
    sim = _core.simulate_schedule(schedule, forward=1 / chunks, backward=2 / chunks, apply=0)
    work = 3 * micro_batches
    assert (sim.makespan - work) / work == pytest.approx((meshes - 1) / (chunks * micro_batches))


def test_programs_run_under_uneven_part_times_without_deadlock():
    for name in ("gpipe", "1f1b", "zb-h1"):
        sim = _core.simulate_schedule(_core.build_schedule(name, 4, 6), forward=0.7, backward=1.9, apply=0.2)
        assert sim.makespan > 0 and all(len(s) == len(e) for s, e in zip(sim.start, sim.end, strict=True))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pipedream", 2, 4), "unknown schedule 'pipedream'"),
        (("1f1b", 0, 4), "meshes must be >= 1"),
        (("1f1b", 2, 0), "micro-batches must be >= 1"),
        (("1f1b", 2, 4, 2), "chunks > 1 needs the interleaved-1f1b schedule"),
        (("interleaved-1f1b", 4, 6, 2), r"micro-batches \(6\) to be a multiple of the meshes \(4\)"),
    ],
)
def test_bad_arguments_are_value_errors(args, message):
    with pytest.raises(ValueError, match=message):
        _core.build_schedule(*args)

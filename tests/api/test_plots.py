"""Pictures and reports of plans (`plan.plot`, `plan.report`; api/plots.py, api/gantt.py, api/report.py) and
the runtimes' opt-in timeline (runtime/timeline.py): each picture is written, the report is one HTML file
with its sections and embedded images, the predicted Gantt chart is the schedule core's simulation, a
step run with `record_timeline` gives a measured one, a missing matplotlib is a clear error and a failed
write leaves no file."""

from __future__ import annotations

import base64
import dataclasses
import html.parser
import os
import subprocess
import sys

import pytest
from benchmarks.models.small import tanh_mlp_adam

import autopar
from autopar.api import gantt
from autopar.api.plots import layer_of, layout_lines, layout_rows

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"
MICRO_BATCHES = 4


@pytest.fixture(scope="module")
def model():
    return tanh_mlp_adam(16, 4, 32)


@pytest.fixture(scope="module")
def mesh_plan(model):
    step, args = model
    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=(2, 4)), batch_argnums=(2,))
    return f.get_execution_plan(*args)


def pipeshard(model, executor="in-process", schedule="1f1b"):
    step, _ = model
    method = autopar.PipeshardParallel(
        num_micro_batches=MICRO_BATCHES,
        layer_option=autopar.AutoLayerOption(layer_num=4),
        stage_option=autopar.UniformStageOption(num_stages=2),
        executor=executor,
        pipeline_schedule=schedule,
    )
    return autopar.parallelize(step, method=method, batch_argnums=(2,))


class Page(html.parser.HTMLParser):
    """The section ids, image sources and any external reference (href/src not data:) of a page."""

    def __init__(self, text):
        super().__init__()
        self.sections, self.images, self.external = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        for key in ("href", "src"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])


def check_report(path, sections, images):
    page = Page(path.read_text())
    assert page.sections == sections
    assert len(page.images) == images and not page.external
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    return page


def test_mesh_plan_pictures(mesh_plan, tmp_path):
    png = mesh_plan.plot(tmp_path / "plan.png")
    assert png == tmp_path / "plan.png" and png.read_bytes().startswith(PNG)
    svg = mesh_plan.plot(tmp_path / "plan.svg").read_text()
    assert "<svg" in svg and "params[0]" in svg  # the tensors are named in the picture
    with pytest.raises(ValueError, match="by suffix"):
        mesh_plan.plot(tmp_path / "plan.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.png", "plan.svg"]


def test_layout_rows_group_a_weight_with_its_optimizer_state_and_update(mesh_plan):
    assert layer_of("opt_state[0].mu[1]") == layer_of("out[0][1]") == layer_of("params[1]") == "[1]"
    flax = "state.params['params']['Block_0']['Dense_0']['kernel']"
    assert layer_of(flax) == layer_of("state.opt_state[0].nu['params']['Block_0']['Dense_0']['bias']")
    assert layer_of(flax) == "['Block_0']" and layer_of("out['w1']") == "['w1']"
    lines = layout_lines(mesh_plan)
    # Per layer: the weight, its two Adam moments and three updates share one layout: one row, 5 alike.
    assert [(g, t.path, n) for g, t, n in lines if g == "[1]"] == [("[1]", "params[1]", 5)]
    groups = [g for g, _, _ in lines]
    assert groups[:6] == ["[0]", "[1]", "[2]", "[3]", "batch", "batch"] and groups[-2:] == ["scalars"] * 2
    everything = len(mesh_plan.inputs) + len(mesh_plan.outputs) + len(mesh_plan.activations)
    assert len(layout_rows(mesh_plan)) == everything


def test_an_activation_joins_the_layer_its_name_stack_names(mesh_plan):
    from jax.sharding import PartitionSpec as P

    from autopar.api.plan import TensorPlacement

    def tensor(path, role):
        return TensorPlacement(path, (4, 4), "float32", P(), role)

    plan = dataclasses.replace(
        mesh_plan,
        inputs=(tensor("state.params['params']['Block_0']['Dense_0']['kernel']", "parameter"),),
        outputs=(),
        activations=(
            tensor("forward dot_general 0 (jvp(Model)/Block_0/Dense_0/dot_general)", "activation"),
            tensor("forward dot_general 1 (jvp(Model)/Head/dot_general)", "activation"),
        ),
    )
    assert [(g, t.path[:19]) for g, t in layout_rows(plan)] == [
        ("['Block_0']", "state.params['param"),
        ("['Block_0']", "forward dot_general"),
        ("activations (forward dots)", "forward dot_general"),
    ]


def test_activations_are_the_planned_layouts_of_the_dots(mesh_plan):
    forward = [t for t in mesh_plan.activations if t.path.startswith("forward dot_general")]
    backward = [t for t in mesh_plan.activations if t.path.startswith("backward dot_general")]
    # One forward dot per layer (its output: batch x width, its batch dim split as the batch is) and the
    # backward dots (weight gradients, and the cotangents of every layer but the first).
    batch = mesh_plan.input_specs()["batch[0]"][0]
    assert [t.shape for t in forward] == [(32, 16)] * 4 and all(t.spec[0] == batch for t in forward)
    assert len(backward) == 7 and all(t.role == "activation" for t in mesh_plan.activations)
    assert "jvp()/dot_general" in forward[0].path


def test_a_manual_plan_has_no_activations_and_still_draws(tmp_path):
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    manual = autopar.ManualShardingOption(("x", "y"), in_axis_resources=(P(None, "y"), P("x")))
    f = autopar.parallelize(
        lambda w, x: jnp.tanh(x @ w),
        method=autopar.ShardParallel(mesh_shape=(2, 4), manual_sharding_option=manual),
    )
    plan = f.get_execution_plan(jnp.ones((16, 16)), jnp.ones((8, 16)))
    assert plan.solver_status == "manual" and plan.activations == ()
    assert plan.plot(tmp_path / "manual.png").read_bytes().startswith(PNG)


def test_mesh_plan_report(mesh_plan, tmp_path):
    mesh_plan.report(tmp_path / "plan.html")
    check_report(tmp_path / "plan.html", ["plan", "pictures", "tensors", "collectives"], 3)
    text = (tmp_path / "plan.html").read_text()
    assert "opt_state[0].mu[1]" in text and "all-reduce" in text


def test_predicted_gantt_is_the_schedule_core_simulation(model, tmp_path):
    step, args = model
    plan = pipeshard(model).get_execution_plan(*args)
    chart = gantt.predicted(plan)
    # 1F1B, 2 meshes, B micro-batches: a forward and a backward per stage and micro-batch, an apply each.
    assert len(chart.events) == 2 * (2 * MICRO_BATCHES + 1)
    assert len(chart.meshes()) == 2 and chart.source == "predicted"
    assert gantt.bubble(chart) == pytest.approx(plan.estimated_bubble)
    assert plan.memory_budget == 16 * 2**30
    unscheduled = dataclasses.replace(plan, schedule="")  # no schedule written: no chart, the rest drawn
    assert not gantt.predicted(unscheduled).events
    assert unscheduled.plot(tmp_path / "plan.png").read_bytes().startswith(PNG)


def test_zb_h1_predicted_bubble_is_a_third_of_1f1b(model, tmp_path):
    """ZB-H1's estimated bubble with equal part times: (S - 1) / (3 B), in the plan and in its chart (the
    plan once simulated the weight halves as taking a second each, so its bubble read about 0)."""
    step, args = model
    plan = pipeshard(model, schedule="zb-h1").get_execution_plan(*args)
    chart = gantt.predicted(plan)
    assert {e.part for e in chart.events} >= {"backward_input", "backward_weight"}
    assert plan.estimated_bubble == pytest.approx(1 / (3 * MICRO_BATCHES))
    assert gantt.bubble(chart) == pytest.approx(plan.estimated_bubble)
    assert plan.plot(tmp_path / "zb.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("executor", ["in-process", "processes"])
def test_measured_gantt_after_a_step(model, executor, tmp_path):
    step, args = model
    f = pipeshard(model, executor)
    f(*args)
    assert f.last_step_timeline() is None  # off by default: a step records nothing
    f.record_timeline = True
    f(*args)
    timeline = f.last_step_timeline()
    assert timeline.source == executor
    runs = {(e.stage, e.part, e.micro_batch) for e in timeline.events if e.part != "apply"}
    assert runs == {(s, p, m) for s in (0, 1) for p in ("forward", "backward") for m in range(MICRO_BATCHES)}
    assert all(0 <= e.start <= e.end for e in timeline.events)
    assert len(timeline.meshes()) == 2 and 0 < sum(timeline.busy().values())
    plan = f.get_execution_plan(*args)
    plan.plot(tmp_path / "pipeline.png", timeline=timeline)
    assert (tmp_path / "pipeline.png").read_bytes().startswith(PNG)
    plan.report(tmp_path / "pipeline.html", timeline=timeline)
    check_report(tmp_path / "pipeline.html", ["plan", "pictures", "stages", "transfers", "schedule"], 4)
    assert f"<h3>{executor}:" in (tmp_path / "pipeline.html").read_text()
    f.record_timeline = False
    f(*args)
    assert f.last_step_timeline() is None


def test_missing_matplotlib_is_a_clear_error(mesh_plan, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"plan.plot needs matplotlib: pip install 'autopar\[plot\]'"):
        mesh_plan.plot(tmp_path / "plan.png")
    with pytest.raises(ImportError, match=r"plan.report needs matplotlib"):
        mesh_plan.report(tmp_path / "plan.html")
    assert not list(tmp_path.iterdir())


def test_drawing_leaves_pyplot_alone(mesh_plan, tmp_path):
    """The pictures are plain Figures: no backend is chosen or switched, no figure is left open."""
    code = (
        "import os, sys, autopar, jax.numpy as jnp\n"
        "f = autopar.parallelize(lambda w, x: jnp.tanh(x @ w), method=autopar.ShardParallel(mesh_shape=8))\n"
        "f.get_execution_plan(jnp.ones((16, 16)), jnp.ones((8, 16))).plot(sys.argv[1])\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.png")], check=True, env=env)
    assert (tmp_path / "p.png").read_bytes().startswith(PNG)


def test_import_autopar_does_not_import_matplotlib():
    code = "import sys, autopar, autopar.api.plan; assert 'matplotlib' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_a_failed_write_leaves_no_file(mesh_plan, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    target = tmp_path / "plan.png"
    target.write_bytes(b"the old picture")

    def half_written(self, fname, **kwargs):
        with open(fname, "wb") as out:
            out.write(PNG[:4])
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        mesh_plan.plot(target)
    assert target.read_bytes() == b"the old picture"  # untouched: the new one never replaced it
    with pytest.raises(OSError, match="disk full"):
        mesh_plan.plot(tmp_path / "new.svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.png"]  # no partial or temporary file


def test_a_missing_folder_is_named_and_nothing_is_written(mesh_plan, tmp_path):
    for write, name in ((mesh_plan.plot, "plan.png"), (mesh_plan.report, "plan.html")):
        with pytest.raises(FileNotFoundError, match=f"no folder {tmp_path / 'nowhere'} to write {name} into"):
            write(tmp_path / "nowhere" / name)
    assert list(tmp_path.iterdir()) == []

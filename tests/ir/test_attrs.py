"""The IR contract (autopar/ir/attrs.py): every typed attribute survives text and bytecode, and no
`autopar.*` attribute name is spelled anywhere else in the package."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from jaxlib.mlir import ir

import autopar
from autopar import ir as air
from autopar.ir import attrs

PACKAGE = Path(autopar.__file__).resolve().parent
DOCS = Path(__file__).resolve().parents[2] / "docs"

SOURCE = """
func.func public @main(%arg0: tensor<4x8xf32>, %arg1: tensor<8x8xf32>) -> tensor<4x8xf32> {
  %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0]
      : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}
func.func private @stage_0_forward(%arg0: tensor<4x8xf32>) -> tensor<4x8xf32> {
  return %arg0 : tensor<4x8xf32>
}
"""

MESH = attrs.StageMesh(shape=(1, 2), logical_shape=(2, 1), device_ids=(4, 5))
PLAN = attrs.InterOpPlan(
    stages=(
        attrs.PlannedStage((0, 2), MESH, 1.25e-3, 3 << 30),
        attrs.PlannedStage((2, 4), attrs.StageMesh((1, 2), (1, 2), (6, 7)), 2.5e-3, 12345),
    ),
    latency=7.5e-3,
    micro_batches=4,
)
RESULT = attrs.IntraOpResult(
    mesh_shape=(2, 4),
    objective=0.125,
    lower_bound=0.0625,
    solver_status="optimal",
    peak_memory=1 << 33,
    clock_cut=True,
    remarks=("stablehlo.custom_call stays replicated", "second remark"),
)
COLLECTIVES = (
    attrs.ExpectedCollective("all-reduce", ("x", "y"), 3, 4096),
    attrs.ExpectedCollective("all-gather", (), 1, 8),
)
MARKS = [attrs.ArgumentMarks(is_batch=True, path="batch['x']"), attrs.ArgumentMarks(is_parameter=True)]
KEPT = attrs.InputSharding(("x", "y"), (2, 4), (("x",), ()))
SCHEDULE = attrs.PipelineSchedule(
    "zb-h1", 2, (("forward:0:0", "backward_weight:0:0", "apply:0"), ("forward:1:0", "backward_input:1:0"))
)

TRANSFER = attrs.Transfer(
    shape=(4, 6),
    src=attrs.TransferEnd(0, (0, 1), (2,), ((0,), ())),
    dst=attrs.TransferEnd(1, (5, 4), (2, 1), ((), (1,))),
    sends=(attrs.TransferSend(0, 5, (0, 0), (2, 6)), attrs.TransferSend(1, 4, (2, 0), (4, 6))),
    gather_groups=((5, 4),),
    bytes=96,
    seconds=2.5e-5,
)


def _module() -> ir.Module:
    return air.parse_text(SOURCE)


def _func(module: ir.Module, name: str) -> ir.Operation:
    return next(op.operation for op in module.body.operations if ir.StringAttr(op.sym_name).value == name)


def _dot(module: ir.Module) -> ir.Operation:
    return _func(module, "main").regions[0].blocks[0].operations[0].operation


def _write_all(module: ir.Module) -> None:
    main, stage, dot = _func(module, "main"), _func(module, "stage_0_forward"), _dot(module)
    attrs.set_argument_marks(main, MARKS)
    attrs.set_pipeline_boundary(dot, "forward")
    attrs.set_layer(dot, 3)
    attrs.set_part(dot, "backward")
    attrs.set_num_layers(module.operation, 5)
    attrs.set_inter_op_plan(module.operation, PLAN)
    with module.context:
        for name, value in attrs.stage_attributes(0, "forward", MESH).items():
            stage.attributes[name] = value
    attrs.set_intra_op_result(module.operation, RESULT)
    attrs.set_expected_collectives(module.operation, COLLECTIVES)
    attrs.set_schedule(module.operation, SCHEDULE)
    attrs.set_input_sharding(main, 1, KEPT)
    attrs.set_micro_batch_labels(dot, ["mean"])
    attrs.set_micro_batch_size(module.operation, 8)
    attrs.set_transfer(dot, TRANSFER)


def _read_all(module: ir.Module) -> dict[str, object]:
    main, stage, dot = _func(module, "main"), _func(module, "stage_0_forward"), _dot(module)
    return {
        "marks": attrs.get_argument_marks(main),
        "boundary": attrs.get_pipeline_boundary(dot),
        "layer": attrs.get_layer(dot),
        "op part": attrs.get_part(dot),
        "num_layers": attrs.get_num_layers(module.operation),
        "plan": attrs.get_inter_op_plan(module.operation),
        "micro_batches": attrs.get_micro_batches(module.operation),
        "stage": attrs.get_stage(stage),
        "stage part": attrs.get_part(stage),
        "mesh": attrs.get_stage_mesh(stage),
        "result": attrs.get_intra_op_result(module.operation),
        "collectives": attrs.get_expected_collectives(module.operation),
        "schedule": attrs.get_schedule(module.operation),
        "kept": attrs.get_input_shardings(main),
        "labels": attrs.get_micro_batch_labels(dot),
        "micro_batch_size": attrs.get_micro_batch_size(module.operation),
        "transfer": attrs.get_transfer(dot),
    }


EXPECTED = {
    "marks": MARKS,
    "boundary": "forward",
    "layer": 3,
    "op part": "backward",
    "num_layers": 5,
    "plan": PLAN,
    "micro_batches": 4,
    "stage": 0,
    "stage part": "forward",
    "mesh": MESH,
    "result": RESULT,
    "collectives": COLLECTIVES,
    "schedule": SCHEDULE,
    "kept": [None, KEPT],
    "labels": ("mean",),
    "micro_batch_size": 8,
    "transfer": TRANSFER,
}

ROUND_TRIPS: dict[str, Callable[[ir.Module], ir.Module]] = {
    "text": lambda m: air.parse_text(air.to_bytes(m, air.Emit.TEXT).decode()),
    "bytecode": lambda m: air.parse_bytes(air.to_bytes(m, air.Emit.BYTECODE)),
}


@pytest.mark.parametrize("form", list(ROUND_TRIPS))
def test_every_attribute_round_trips(form: str) -> None:
    module = _module()
    _write_all(module)
    assert _read_all(module) == EXPECTED  # read back before serializing: the writers' own types
    again = ROUND_TRIPS[form](module)
    assert _read_all(again) == EXPECTED
    assert str(again) == str(module)


def test_absent_attributes_read_as_none() -> None:
    module = _module()
    read = _read_all(module)
    assert read.pop("marks") == [attrs.ArgumentMarks(), attrs.ArgumentMarks()]
    assert read.pop("kept") == [None, None]
    assert all(value is None for value in read.values()), read


def test_optional_fields_are_not_written() -> None:
    # clock_cut and remarks appear only when true / non-empty: plans and lit tests compare the text.
    module = _module()
    quiet = attrs.IntraOpResult((8,), 1.0, 0.5, "feasible", 1024)
    attrs.set_intra_op_result(module.operation, quiet)
    text = str(module)
    assert attrs.CLOCK_CUT not in text and attrs.REMARKS not in text
    assert attrs.get_intra_op_result(air.parse_text(text).operation) == quiet


def test_text_is_what_the_passes_always_wrote() -> None:
    module = _module()
    _write_all(module)
    text = str(module)
    dot = str(_dot(module))
    assert (
        'autopar.layer = 3 : i64, autopar.micro_batch = ["mean"], autopar.part = "backward", '
        'autopar.pipeline_boundary = "forward"' in dot
    )
    assert 'autopar.schedule = {micro_batches = 2 : i64, name = "zb-h1", programs = [["forward:0:0",' in text
    assert "autopar.inter_op.micro_batches = 4 : i64" in text
    assert "autopar.num_layers = 5 : i64" in text
    assert (
        "autopar.mesh = {device_ids = array<i64: 4, 5>, logical_shape = array<i64: 2, 1>, "
        'shape = array<i64: 1, 2>}, autopar.part = "forward", autopar.stage = 0 : i64' in text
    )
    assert "autopar.objective = 1.250000e-01 : f64" in text
    assert '{axes = "x,y", bytes = 4096 : i64, count = 3 : i64, kind = "all-reduce"}' in text
    assert "%arg0: tensor<4x8xf32> {autopar.batch, autopar.path = \"batch['x']\"}" in text
    assert (
        '%arg1: tensor<8x8xf32> {autopar.input_sharding = {dims = [["x"], []], mesh = ["x", "y"], '
        "sizes = array<i64: 2, 4>}, autopar.parameter}" in text
    )


def test_clear_stage_and_layer() -> None:
    module = _module()
    _write_all(module)
    stage, dot = _func(module, "stage_0_forward"), _dot(module)
    attrs.clear_stage(stage)
    attrs.clear_layer(dot)
    assert attrs.get_stage(stage) is None and attrs.get_stage_mesh(stage) is None
    assert attrs.get_part(stage) is None and attrs.get_layer(dot) is None
    assert attrs.get_part(dot) == "backward"


def test_marks_keep_other_argument_attributes() -> None:
    donor = "%arg1: tensor<8x8xf32> {jax.buffer_donor = true})"
    module = air.parse_text(SOURCE.replace("%arg1: tensor<8x8xf32>)", donor))
    attrs.set_argument_marks(_func(module, "main"), MARKS)
    assert "{autopar.parameter, jax.buffer_donor = true}" in str(module)


# ---- the contract stays in one place ----------------------------------------------------------------------

# Dotted names under `autopar.` that are not attributes: logger names.
LOGGERS = {"autopar.solvers"}


def _is_python_name(dotted: str) -> bool:
    """A module of the package or an object reachable from one (`autopar.mark_pipeline_boundary`)."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:  # a parent is no module either
            continue
        obj = importlib.import_module(name)
        for part in parts[k:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


def _string_constants(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
    return out


def test_no_attribute_name_outside_attrs_py() -> None:
    # A string that starts with "autopar." outside attrs.py is an attribute spelled by hand (or a docstring
    # or message naming a module). Messages and docstrings name attributes through the constants or in
    # prose, never as a string of their own; a module path, an object path or a logger name is allowed.
    pattern = re.compile(r"autopar(\.[A-Za-z_][A-Za-z0-9_]*)+")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "ir" / "attrs.py":
            continue
        for line, value in _string_constants(path):
            match = pattern.match(value)
            if not match:
                continue
            name = match.group(0)
            if name in attrs.ALL or not (name in LOGGERS or _is_python_name(name)):
                offenders.append(f"{path.relative_to(PACKAGE)}:{line}: {name}")
    assert not offenders, "use autopar.ir.attrs instead of:\n" + "\n".join(offenders)


def test_every_attribute_is_named_once() -> None:
    assert len(set(attrs.ALL)) == len(attrs.ALL)
    module_constants = {v for k, v in vars(attrs).items() if k.isupper() and isinstance(v, str)}
    assert module_constants == set(attrs.ALL)


def test_docs_list_every_attribute() -> None:
    doc = (DOCS / "passes_and_driver.md").read_text()
    section = doc[doc.index("## The IR contract") :]
    listed = set(re.findall(r"^\| `(autopar\.[a-z_.]+)`", section, re.M))
    assert listed == set(attrs.ALL)


def test_schedule_steps_read_back_what_they_write() -> None:
    for program in SCHEDULE.programs:
        for text in program:
            assert attrs.ScheduleStep.parse(text).text() == text
    assert attrs.ScheduleStep.parse("backward_input:1:0") == attrs.ScheduleStep("backward_input", 1, 0)
    with pytest.raises(ValueError, match="cannot read the instruction 'forward:x:0'"):
        attrs.ScheduleStep.parse("forward:x:0")

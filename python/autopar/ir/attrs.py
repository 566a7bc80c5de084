# Longer than 500 lines because every autopar.* attribute and its typed reader and writer live here, in one
# place (the IR contract); the sections below are independent and short.
"""The IR contract: every `autopar.*` attribute name, and typed readers and writers for each.

Passes, the API and the runtime hand each other facts through attributes on the module, on functions,
on their arguments and on ops. Each name is defined here once, with who writes it and who reads it, so a
reader can never drift from its writer by a typo or a changed type (docs/passes_and_driver.md, "The IR
contract", lists the same table). Readers return None when the attribute is absent: absence means "the
pass that writes it has not run", which each caller handles in its own way.

The text written is part of the contract too (lit tests and saved plans compare it), so every writer
builds exactly the attribute kinds listed: i64 integers, f64 floats, strings, dense i64 arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Protocol

from jaxlib.mlir import ir

# ---- names -----------------------------------------------------------------------------------------------

# @main argument attributes (unit / string), written by api/arguments.py (`mark_roles`):
BATCH = "autopar.batch"  # dim 0 is a batch dim; read by intra_op/graph.py and runtime/sequential.py
PARAMETER = "autopar.parameter"  # a parameter or optimizer state; read by intra_op/graph.py
PATH = "autopar.path"  # an argument's or result's pytree path, for messages; read by intra_op/graph.py
# {mesh = [axis names], sizes = [i64], dims = [[axis names] per dim]}: a layout the argument must keep,
# written by ir/exported.py (--input-shardings=keep), read by intra_op/graph.py
INPUT_SHARDING = "autopar.input_sharding"

# Function attribute (unit): no result of this function is an updated parameter, so the intra-op pass pairs
# no argument with a result (a pipeline stage's forward or backward part planned alone: its parameters
# are marked `autopar.parameter`, and pairing by type would take an activation or gradient for their
# update). Written by autopar-shard-stages and the stage DP's layer modules, read by intra_op/graph_facts.py.
NO_UPDATES = "autopar.no_updates"

# Op attributes:
# "forward"|"backward" on a hand-placed marker: pipeline_marker.py -> inter_op/graph.py
PIPELINE_BOUNDARY = "autopar.pipeline_boundary"
LAYER = "autopar.layer"  # i64 layer of a top-level op: cluster_layers.py -> inter_op.py
# "forward"|"backward"|"apply", on ops (cluster_layers.py -> inter_op.py) and on stage functions
# (inter_op.py -> runtime/sequential.py)
PART = "autopar.part"

# How a value of the micro-batch step combines into the full-batch step, written on @main's ops by
# ir/micro_batch.py (parallelize, PipeshardParallel), read by runtime/sequential.py:
MICRO_BATCH = "autopar.micro_batch"  # [string] one label per op result ("same", "mean", "concat:0", ...)
MICRO_BATCH_SIZE = "autopar.micro_batch_size"  # i64 module attribute: m, the examples the labels are for

# Module attribute of the layer clustering, cluster_layers.py -> inter_op.py:
NUM_LAYERS = "autopar.num_layers"  # i64 layer count (trailing layers may be empty)

# Module attributes of the inter-op plan, written by inter_op.py:
INTER_OP_PLAN = "autopar.inter_op.plan"  # [{layers, mesh, cost, memory}] per stage; read by api/pipeshard.py
INTER_OP_LATENCY = "autopar.inter_op.latency"  # f64 seconds per iteration; read by api/pipeshard.py
# i64 micro-batches per iteration; read by api/pipeshard.py and runtime/sequential.py
INTER_OP_MICRO_BATCHES = "autopar.inter_op.micro_batches"

# Module attribute of the pipeline schedule, written by passes/schedule.py, read by runtime/sequential.py:
SCHEDULE = "autopar.schedule"  # {name, micro_batches, programs: [[instruction string]] per stage mesh}

# Stage function attributes, written by inter_op.py (outlining), read by runtime/sequential.py:
STAGE = "autopar.stage"  # i64 stage index k of @stage_k_<part>
MESH = "autopar.mesh"  # {shape, logical_shape, device_ids} the stage runs on
# A host callback's one-device placement, kept through the pipeshard passes (ir/host_callbacks.py): unit,
# written by inter_op.py, read by runtime/step.py, which places the callback on its stage's first device.
HOST_CALLBACK = "autopar.host_callback"

# The cross-mesh transfer of a value between two stages: `stablehlo.custom_call @autopar.transfer(%x)`
# in @main (the call target is this name too), carrying the plan as this attribute
# ({shape, src, dst, sends, gather_groups, bytes, seconds}); written by passes/reshard.py, read by
# runtime/sequential.py, runtime/transfer.py and api/transfers.py:
TRANSFER = "autopar.transfer"

# Module attributes of the intra-op result, written by intra_op/emit.py, read by api/plan.py:
MESH_SHAPE = "autopar.mesh_shape"  # dense i64 logical mesh the plan is for
OBJECTIVE = "autopar.objective"  # f64 estimated seconds per step
LOWER_BOUND = "autopar.lower_bound"  # f64 the solver's proven lower bound on the objective
SOLVER_STATUS = "autopar.solver_status"  # the solver's status string ("optimal", "feasible", ...)
PEAK_MEMORY = "autopar.peak_memory"  # i64 estimated peak bytes per device
CLOCK_CUT = "autopar.clock_cut"  # true, only when the wall-clock cap cut planning short
REMARKS = "autopar.remarks"  # [string], only when any (ops left replicated, ...); module or stage function
EXPECTED_COLLECTIVES = "autopar.expected_collectives"  # [{kind, axes, count, bytes}] the plan priced

ALL = (
    BATCH,
    PARAMETER,
    PATH,
    INPUT_SHARDING,
    NO_UPDATES,
    PIPELINE_BOUNDARY,
    LAYER,
    PART,
    MICRO_BATCH,
    MICRO_BATCH_SIZE,
    NUM_LAYERS,
    INTER_OP_PLAN,
    INTER_OP_LATENCY,
    INTER_OP_MICRO_BATCHES,
    SCHEDULE,
    STAGE,
    MESH,
    HOST_CALLBACK,
    TRANSFER,
    MESH_SHAPE,
    OBJECTIVE,
    LOWER_BOUND,
    SOLVER_STATUS,
    PEAK_MEMORY,
    CLOCK_CUT,
    REMARKS,
    EXPECTED_COLLECTIVES,
)


# ---- scalar helpers ----------------------------------------------------------------------------------------


def _i64(value: int, context: ir.Context | None = None) -> ir.Attribute:
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64, context), int(value))


def _f64(value: float, context: ir.Context | None = None) -> ir.Attribute:
    # get_f64, not get(F64Type, ...): the latter wants a current Location for its diagnostics.
    return ir.FloatAttr.get_f64(float(value), context)


def _ints(attr: ir.Attribute) -> tuple[int, ...]:
    return tuple(ir.DenseI64ArrayAttr(attr))


def _get(op: ir.Operation | ir.OpView, name: str) -> ir.Attribute | None:
    attrs = op.operation.attributes
    return attrs[name] if name in attrs else None


def _delete(op: ir.Operation | ir.OpView, name: str) -> None:
    if name in op.operation.attributes:
        del op.operation.attributes[name]


def clear_all(op: ir.Operation | ir.OpView) -> None:
    """Removes every autopar.* attribute of `op` (planning facts that are not part of the program: an
    exported module carries none)."""
    attrs = op.operation.attributes
    for name in [a if isinstance(a, str) else a.name for a in attrs]:
        if name.startswith("autopar."):  # every name in ALL, and plugins' own
            del attrs[name]


# ---- argument marks --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ArgumentMarks:
    """What parallelize tells the passes about one @main argument (`autopar.batch`, `.parameter`, `.path`).

    Unmarked arguments (a module from the command line) read as all false / None."""

    is_batch: bool = False
    is_parameter: bool = False
    path: str | None = None


def _arg_dicts(func_op: ir.Operation | ir.OpView) -> list[ir.DictAttr]:
    return _dicts(func_op, "arg_attrs", "inputs")


def result_dicts(func_op: ir.Operation | ir.OpView) -> list[ir.DictAttr]:
    """Each result's attribute dictionary (empty ones when the function has no `res_attrs`)."""
    return _dicts(func_op, "res_attrs", "results")


def _dicts(func_op: ir.Operation | ir.OpView, key: str, side: str) -> list[ir.DictAttr]:
    attrs = func_op.operation.attributes
    if key in attrs:
        return [ir.DictAttr(a) for a in ir.ArrayAttr(attrs[key])]
    count = len(getattr(ir.FunctionType(ir.TypeAttr(attrs["function_type"]).value), side))
    with func_op.context:
        return [ir.DictAttr.get({}) for _ in range(count)]


def _string(d: ir.DictAttr, key: str) -> str | None:
    return ir.StringAttr(d[key]).value if key in d else None


def get_result_paths(func_op: ir.Operation | ir.OpView) -> list[str | None]:
    """Each result's pytree path as JAX wrote it (`jax.result_info`: "result[0]['w']"), else None."""
    return [_string(d, "jax.result_info") for d in result_dicts(func_op)]  # JAX's name, not autopar's (ALL)


def get_argument_marks(func_op: ir.Operation | ir.OpView) -> list[ArgumentMarks]:
    out = []
    for d in _arg_dicts(func_op):
        out.append(ArgumentMarks(BATCH in d, PARAMETER in d, _string(d, PATH)))
    return out


def set_argument_marks(func_op: ir.Operation | ir.OpView, marks: Sequence[ArgumentMarks]) -> None:
    """Adds the marks to the arguments' existing attributes (shardings, donation stay). One write of
    `arg_attrs`: per-argument setters would rebuild the whole array once per argument."""
    with func_op.context:
        unit = ir.UnitAttr.get()
        dicts = []
        for i, old in enumerate(_arg_dicts(func_op)):
            entries = {named.name: named.attr for named in old}
            if i < len(marks):
                if marks[i].is_batch:
                    entries[BATCH] = unit
                if marks[i].is_parameter:
                    entries[PARAMETER] = unit
                if marks[i].path is not None:
                    entries[PATH] = ir.StringAttr.get(marks[i].path)
            dicts.append(ir.DictAttr.get(entries))
        func_op.operation.attributes["arg_attrs"] = ir.ArrayAttr.get(dicts)


def set_result_paths(func_op: ir.Operation | ir.OpView, paths: Sequence[str]) -> None:
    """Names each result by the pytree path its user knows it by (`autopar.path`, beside JAX's
    `jax.result_info`, which the passes read to pair state and which stays as JAX wrote it)."""
    with func_op.context:
        dicts = []
        for i, old in enumerate(result_dicts(func_op)):
            entries = {named.name: named.attr for named in old}
            if i < len(paths):
                entries[PATH] = ir.StringAttr.get(paths[i])
            dicts.append(ir.DictAttr.get(entries))
        func_op.operation.attributes["res_attrs"] = ir.ArrayAttr.get(dicts)


def get_result_names(func_op: ir.Operation | ir.OpView) -> list[str | None]:
    """Each result's name for messages: its `autopar.path`, else JAX's `jax.result_info`, else None."""
    return [_string(d, PATH) or _string(d, "jax.result_info") for d in result_dicts(func_op)]


@dataclasses.dataclass(frozen=True)
class InputSharding:
    """A kept layout of a @main argument: the mesh's axes (names, sizes) and per dim the axes splitting it."""

    mesh: tuple[str, ...]
    sizes: tuple[int, ...]
    dims: tuple[tuple[str, ...], ...]


def set_input_sharding(func_op: ir.Operation | ir.OpView, index: int, sharding: InputSharding) -> None:
    ctx = func_op.context
    names = lambda xs: ir.ArrayAttr.get([ir.StringAttr.get(x, ctx) for x in xs], ctx)  # noqa: E731
    value = ir.DictAttr.get(
        {
            "mesh": names(sharding.mesh),
            "sizes": ir.DenseI64ArrayAttr.get(list(sharding.sizes), ctx),
            "dims": ir.ArrayAttr.get([names(d) for d in sharding.dims], ctx),
        },
        ctx,
    )
    dicts = _arg_dicts(func_op)
    entries = {n.name: n.attr for n in dicts[index]} | {INPUT_SHARDING: value}
    dicts[index] = ir.DictAttr.get(entries, ctx)
    func_op.attributes["arg_attrs"] = ir.ArrayAttr.get(dicts, ctx)


def get_input_shardings(func_op: ir.Operation | ir.OpView) -> list[InputSharding | None]:
    out: list[InputSharding | None] = []
    for d in _arg_dicts(func_op):
        if INPUT_SHARDING not in d:
            out.append(None)
            continue
        v = ir.DictAttr(d[INPUT_SHARDING])
        strings = lambda a: tuple(ir.StringAttr(x).value for x in ir.ArrayAttr(a))  # noqa: E731
        dims = tuple(strings(x) for x in ir.ArrayAttr(v["dims"]))
        out.append(InputSharding(strings(v["mesh"]), _ints(v["sizes"]), dims))
    return out


# ---- op attributes: pipeline boundaries, layers, parts -----------------------------------------------------


def set_pipeline_boundary(op: ir.Operation | ir.OpView, kind: str) -> None:
    op.operation.attributes[PIPELINE_BOUNDARY] = ir.StringAttr.get(kind, op.context)


def get_pipeline_boundary(op: ir.Operation | ir.OpView) -> str | None:
    attr = _get(op, PIPELINE_BOUNDARY)
    return ir.StringAttr(attr).value if attr is not None else None


def set_layer(op: ir.Operation | ir.OpView, layer: int) -> None:
    op.operation.attributes[LAYER] = _i64(layer, op.context)


def get_layer(op: ir.Operation | ir.OpView) -> int | None:
    attr = _get(op, LAYER)
    return ir.IntegerAttr(attr).value if attr is not None else None


def clear_layer(op: ir.Operation | ir.OpView) -> None:
    _delete(op, LAYER)


def set_part(op: ir.Operation | ir.OpView, part: str) -> None:
    op.operation.attributes[PART] = ir.StringAttr.get(part, op.context)


def get_part(op: ir.Operation | ir.OpView) -> str | None:
    attr = _get(op, PART)
    return ir.StringAttr(attr).value if attr is not None else None


def set_num_layers(module_op: ir.Operation | ir.OpView, num_layers: int) -> None:
    module_op.operation.attributes[NUM_LAYERS] = _i64(num_layers, module_op.context)


def get_num_layers(module_op: ir.Operation | ir.OpView) -> int | None:
    attr = _get(module_op, NUM_LAYERS)
    return ir.IntegerAttr(attr).value if attr is not None else None


# ---- stages and the inter-op plan --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StageMesh:
    """`autopar.mesh`: the physical submesh (hosts, devices per host), the logical mesh the stage is
    sharded over (absent in hand-written modules: the runtime then uses one axis) and the cluster device
    ids it runs on."""

    shape: tuple[int, ...]
    logical_shape: tuple[int, ...] | None
    device_ids: tuple[int, ...]

    def to_attr(self, context: ir.Context | None = None) -> ir.Attribute:
        entries = {
            "shape": ir.DenseI64ArrayAttr.get(list(self.shape), context),
            "device_ids": ir.DenseI64ArrayAttr.get(list(self.device_ids), context),
        }
        if self.logical_shape is not None:
            entries["logical_shape"] = ir.DenseI64ArrayAttr.get(list(self.logical_shape), context)
        return ir.DictAttr.get(entries, context)

    @staticmethod
    def from_attr(attr: ir.Attribute) -> StageMesh:
        d = ir.DictAttr(attr)
        logical = _ints(d["logical_shape"]) if "logical_shape" in d else None
        return StageMesh(_ints(d["shape"]), logical, _ints(d["device_ids"]))


def stage_attributes(stage: int, part: str, mesh: StageMesh) -> dict[str, ir.Attribute]:
    """The attributes of a stage function @stage_<stage>_<part>, in the current context (outlining
    creates the function later and copies them on)."""
    return {STAGE: _i64(stage), PART: ir.StringAttr.get(part), MESH: mesh.to_attr()}


def get_stage(fn: ir.Operation | ir.OpView) -> int | None:
    attr = _get(fn, STAGE)
    return ir.IntegerAttr(attr).value if attr is not None else None


def get_stage_mesh(fn: ir.Operation | ir.OpView) -> StageMesh | None:
    attr = _get(fn, MESH)
    return StageMesh.from_attr(attr) if attr is not None else None


def clear_stage(fn: ir.Operation | ir.OpView) -> None:
    """Drops a stage function's stage attributes (its clone becomes a stage module's plain @main)."""
    for name in (MESH, PART, STAGE):
        _delete(fn, name)


@dataclasses.dataclass(frozen=True)
class PlannedStage:
    """One entry of `autopar.inter_op.plan`: layers [start, end), mesh, seconds per micro-batch and bytes
    per device with one micro-batch in flight."""

    layers: tuple[int, int]
    mesh: StageMesh
    cost: float
    memory: int

    def to_attr(self, context: ir.Context | None = None) -> ir.Attribute:
        entries = {
            "layers": ir.DenseI64ArrayAttr.get(list(self.layers), context),
            "mesh": self.mesh.to_attr(context),
            "cost": _f64(self.cost, context),
            "memory": _i64(self.memory, context),
        }
        return ir.DictAttr.get(entries, context)

    @staticmethod
    def from_attr(attr: ir.Attribute) -> PlannedStage:
        d = ir.DictAttr(attr)
        start, end = _ints(d["layers"])
        return PlannedStage(
            (start, end),
            StageMesh.from_attr(d["mesh"]),
            ir.FloatAttr(d["cost"]).value,
            ir.IntegerAttr(d["memory"]).value,
        )


@dataclasses.dataclass(frozen=True)
class InterOpPlan:
    """The three module attributes autopar-inter-op writes: stages, latency (seconds per iteration) and
    micro-batches per iteration."""

    stages: tuple[PlannedStage, ...]
    latency: float
    micro_batches: int


def set_stages(module_op: ir.Operation | ir.OpView, stages: Sequence[PlannedStage]) -> None:
    """Only the stage list (a benchmark outlines a plan without the rest of the pass)."""
    ctx = module_op.context
    module_op.operation.attributes[INTER_OP_PLAN] = ir.ArrayAttr.get([s.to_attr(ctx) for s in stages], ctx)


def set_inter_op_plan(module_op: ir.Operation | ir.OpView, plan: InterOpPlan) -> None:
    set_stages(module_op, plan.stages)
    attrs = module_op.operation.attributes
    attrs[INTER_OP_LATENCY] = _f64(plan.latency, module_op.context)
    attrs[INTER_OP_MICRO_BATCHES] = _i64(plan.micro_batches, module_op.context)


def get_inter_op_plan(module_op: ir.Operation | ir.OpView) -> InterOpPlan | None:
    plan, latency = _get(module_op, INTER_OP_PLAN), _get(module_op, INTER_OP_LATENCY)
    micro_batches = get_micro_batches(module_op)
    if plan is None or latency is None or micro_batches is None:
        return None
    stages = tuple(PlannedStage.from_attr(s) for s in ir.ArrayAttr(plan))
    return InterOpPlan(stages, ir.FloatAttr(latency).value, micro_batches)


def get_micro_batches(module_op: ir.Operation | ir.OpView) -> int | None:
    """The runtime needs only B (its caller may also pass one of its own)."""
    attr = _get(module_op, INTER_OP_MICRO_BATCHES)
    return ir.IntegerAttr(attr).value if attr is not None else None


# ---- transfers between stages --------------------------------------------------------------------------


def _i64s(values: Iterable[int], context: ir.Context | None) -> ir.Attribute:
    return ir.DenseI64ArrayAttr.get([int(v) for v in values], context)


@dataclasses.dataclass(frozen=True)
class TransferEnd:
    """One side of a transfer: the stage, its mesh's devices (cluster ids, row-major over `mesh`), the
    mesh shape, and per tensor dim the mesh axes splitting it (major to minor; empty: not split)."""

    stage: int
    devices: tuple[int, ...]
    mesh: tuple[int, ...]
    dim_axes: tuple[tuple[int, ...], ...]

    def to_attr(self, context: ir.Context | None = None) -> ir.Attribute:
        entries = {
            "stage": _i64(self.stage, context),
            "devices": _i64s(self.devices, context),
            "mesh": _i64s(self.mesh, context),
            "dim_axes": ir.ArrayAttr.get([_i64s(a, context) for a in self.dim_axes], context),
        }
        return ir.DictAttr.get(entries, context)

    @staticmethod
    def from_attr(attr: ir.Attribute) -> TransferEnd:
        d = ir.DictAttr(attr)
        axes = tuple(_ints(a) for a in ir.ArrayAttr(d["dim_axes"]))
        return TransferEnd(ir.IntegerAttr(d["stage"]).value, _ints(d["devices"]), _ints(d["mesh"]), axes)


@dataclasses.dataclass(frozen=True)
class TransferSend:
    """The slice [start, limit) (global coordinates) that device `src` sends to device `dst`; a local
    copy when they are the same device."""

    src: int
    dst: int
    start: tuple[int, ...]
    limit: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Transfer:
    """`autopar.transfer`: how a value of shape `shape` moves from its layout on one stage's mesh to its
    layout on another's (passes/inter_op/reshard). `gather_groups`: destination devices that all-gather
    one tile after each received a part of it. `bytes`: bytes that cross between devices; `seconds`: the
    plan's alpha-beta time."""

    shape: tuple[int, ...]
    src: TransferEnd
    dst: TransferEnd
    sends: tuple[TransferSend, ...]
    gather_groups: tuple[tuple[int, ...], ...]
    bytes: int
    seconds: float

    def to_attr(self, context: ir.Context | None = None) -> ir.Attribute:
        sends = []
        for s in self.sends:
            fields = {
                "src": _i64(s.src, context),
                "dst": _i64(s.dst, context),
                "start": _i64s(s.start, context),
                "limit": _i64s(s.limit, context),
            }
            sends.append(ir.DictAttr.get(fields, context))
        entries = {
            "shape": _i64s(self.shape, context),
            "src": self.src.to_attr(context),
            "dst": self.dst.to_attr(context),
            "sends": ir.ArrayAttr.get(sends, context),
            "gather_groups": ir.ArrayAttr.get([_i64s(g, context) for g in self.gather_groups], context),
            "bytes": _i64(self.bytes, context),
            "seconds": _f64(self.seconds, context),
        }
        return ir.DictAttr.get(entries, context)

    @staticmethod
    def from_attr(attr: ir.Attribute) -> Transfer:
        d = ir.DictAttr(attr)
        sends = []
        for item in ir.ArrayAttr(d["sends"]):
            s = ir.DictAttr(item)
            src, dst = ir.IntegerAttr(s["src"]).value, ir.IntegerAttr(s["dst"]).value
            sends.append(TransferSend(src, dst, _ints(s["start"]), _ints(s["limit"])))
        return Transfer(
            _ints(d["shape"]),
            TransferEnd.from_attr(d["src"]),
            TransferEnd.from_attr(d["dst"]),
            tuple(sends),
            tuple(_ints(g) for g in ir.ArrayAttr(d["gather_groups"])),
            ir.IntegerAttr(d["bytes"]).value,
            ir.FloatAttr(d["seconds"]).value,
        )


def set_transfer(op: ir.Operation | ir.OpView, transfer: Transfer) -> None:
    op.operation.attributes[TRANSFER] = transfer.to_attr(op.context)


def get_transfer(op: ir.Operation | ir.OpView) -> Transfer | None:
    """The plan of a transfer op (None on any other op)."""
    attr = _get(op, TRANSFER)
    return Transfer.from_attr(attr) if attr is not None else None


# ---- the pipeline schedule -----------------------------------------------------------------------------


PARTS_WITH_MICRO_BATCH = ("forward", "backward", "backward_input", "backward_weight")


@dataclasses.dataclass(frozen=True)
class ScheduleStep:
    """One instruction of a stage mesh's program: run `part` of `stage` for `micro_batch` (-1: apply),
    written as "forward:<stage>:<micro-batch>" or "apply:<stage>"."""

    part: str
    stage: int
    micro_batch: int = -1

    def text(self) -> str:
        return (
            f"apply:{self.stage}" if self.part == "apply" else f"{self.part}:{self.stage}:{self.micro_batch}"
        )

    @staticmethod
    def parse(text: str) -> ScheduleStep:
        fields = text.split(":")
        if fields[0] == "apply" and len(fields) == 2 and fields[1].isdigit():
            return ScheduleStep("apply", int(fields[1]))
        if (
            fields[0] in PARTS_WITH_MICRO_BATCH
            and len(fields) == 3
            and fields[1].isdigit()
            and fields[2].isdigit()
        ):
            return ScheduleStep(fields[0], int(fields[1]), int(fields[2]))
        raise ValueError(f"{SCHEDULE}: cannot read the instruction {text!r}")


@dataclasses.dataclass(frozen=True)
class PipelineSchedule:
    """`autopar.schedule`: per stage mesh, its instructions in order ("forward:<stage>:<micro-batch>",
    "backward:<stage>:<micro-batch>", "apply:<stage>")."""

    name: str
    micro_batches: int
    programs: tuple[tuple[str, ...], ...]


def set_schedule(module_op: ir.Operation | ir.OpView, schedule: PipelineSchedule) -> None:
    ctx = module_op.context
    programs = [ir.ArrayAttr.get([ir.StringAttr.get(x, ctx) for x in p], ctx) for p in schedule.programs]
    entries = {
        "name": ir.StringAttr.get(schedule.name, ctx),
        "micro_batches": _i64(schedule.micro_batches, ctx),
        "programs": ir.ArrayAttr.get(programs, ctx),
    }
    module_op.attributes[SCHEDULE] = ir.DictAttr.get(entries, ctx)


def get_schedule(module_op: ir.Operation | ir.OpView) -> PipelineSchedule | None:
    attr = _get(module_op, SCHEDULE)
    if attr is None:
        return None
    d = ir.DictAttr(attr)
    programs = tuple(
        tuple(ir.StringAttr(x).value for x in ir.ArrayAttr(p)) for p in ir.ArrayAttr(d["programs"])
    )
    return PipelineSchedule(
        ir.StringAttr(d["name"]).value, ir.IntegerAttr(d["micro_batches"]).value, programs
    )


# ---- micro-batch combination labels ----------------------------------------------------------------------


def set_micro_batch_labels(op: ir.Operation | ir.OpView, labels: Sequence[str]) -> None:
    with op.context:
        op.attributes[MICRO_BATCH] = ir.ArrayAttr.get([ir.StringAttr.get(x) for x in labels])


def get_micro_batch_labels(op: ir.Operation | ir.OpView) -> tuple[str, ...] | None:
    attr = _get(op, MICRO_BATCH)
    return tuple(ir.StringAttr(x).value for x in ir.ArrayAttr(attr)) if attr is not None else None


# Ops added after labelling (Shardy's constraints, canonicalization's reshapes) that carry their one
# example-data operand's label; any other unlabelled op on example data has no known combination.
LABEL_CARRYING_OPS = frozenset(
    {
        "sdy.sharding_constraint",
        "sdy.reshard",
        "stablehlo.reshape",
        "stablehlo.transpose",
        "stablehlo.convert",
        "stablehlo.broadcast_in_dim",
        "stablehlo.copy",
    }
)


def set_micro_batch_size(module_op: ir.Operation | ir.OpView, size: int) -> None:
    module_op.attributes[MICRO_BATCH_SIZE] = _i64(size, module_op.context)


def get_micro_batch_size(module_op: ir.Operation | ir.OpView) -> int | None:
    """Present when the module's ops carry micro-batch labels (absent: nobody classified them)."""
    attr = _get(module_op, MICRO_BATCH_SIZE)
    return ir.IntegerAttr(attr).value if attr is not None else None


# ---- the intra-op result -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IntraOpResult:
    """The module attributes autopar-intra-op writes about its solve (the shardings themselves are Shardy's
    `sdy.*` attributes). `clock_cut` and `remarks` are written only when true / non-empty."""

    mesh_shape: tuple[int, ...]
    objective: float
    lower_bound: float
    solver_status: str
    peak_memory: int
    clock_cut: bool = False
    remarks: tuple[str, ...] = ()


def set_intra_op_result(module_op: ir.Operation | ir.OpView, result: IntraOpResult) -> None:
    ctx = module_op.context
    attrs = module_op.operation.attributes
    attrs[MESH_SHAPE] = ir.DenseI64ArrayAttr.get(list(result.mesh_shape), ctx)
    attrs[OBJECTIVE] = _f64(result.objective, ctx)
    attrs[LOWER_BOUND] = _f64(result.lower_bound, ctx)
    attrs[SOLVER_STATUS] = ir.StringAttr.get(result.solver_status, ctx)
    attrs[PEAK_MEMORY] = _i64(result.peak_memory, ctx)
    if result.clock_cut:
        attrs[CLOCK_CUT] = ir.BoolAttr.get(True, ctx)
    if result.remarks:
        attrs[REMARKS] = remarks_attr(result.remarks, ctx)


def remarks_attr(remarks: Sequence[str], context: ir.Context | None = None) -> ir.Attribute:
    """The `autopar.remarks` value: on the module (autopar-intra-op) or on a stage function, where
    autopar-shard-stages keeps its stage module's remarks for PipeshardExecutionPlan.remarks."""
    return ir.ArrayAttr.get([ir.StringAttr.get(r, context) for r in remarks], context)


def get_remarks(op: ir.Operation | ir.OpView) -> tuple[str, ...]:
    """`autopar.remarks` of a module or stage function (none when absent)."""
    attr = _get(op, REMARKS)
    return tuple(ir.StringAttr(r).value for r in ir.ArrayAttr(attr)) if attr is not None else ()


def get_intra_op_result(module_op: ir.Operation | ir.OpView) -> IntraOpResult | None:
    """None unless autopar-intra-op ran (a manual ShardParallel plan has none)."""
    attrs = module_op.operation.attributes
    if any(name not in attrs for name in (MESH_SHAPE, OBJECTIVE, LOWER_BOUND, SOLVER_STATUS, PEAK_MEMORY)):
        return None
    remarks = get_remarks(module_op)
    return IntraOpResult(
        mesh_shape=_ints(attrs[MESH_SHAPE]),
        objective=ir.FloatAttr(attrs[OBJECTIVE]).value,
        lower_bound=ir.FloatAttr(attrs[LOWER_BOUND]).value,
        solver_status=ir.StringAttr(attrs[SOLVER_STATUS]).value,
        peak_memory=ir.IntegerAttr(attrs[PEAK_MEMORY]).value,
        clock_cut=CLOCK_CUT in attrs and ir.BoolAttr(attrs[CLOCK_CUT]).value,
        remarks=remarks,
    )


class _Collective(Protocol):
    kind: str
    axes: Sequence[str]
    count: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class ExpectedCollective:
    """One entry of `autopar.expected_collectives`: collectives of one kind over one set of mesh axes, their
    count and bytes per device. Stored with the axes joined by commas ("" for none)."""

    kind: str
    axes: tuple[str, ...]
    count: int
    bytes: int


def set_expected_collectives(module_op: ir.Operation | ir.OpView, items: Iterable[_Collective]) -> None:
    ctx = module_op.context
    entries = []
    for e in items:
        fields = {
            "kind": ir.StringAttr.get(e.kind, ctx),
            "axes": ir.StringAttr.get(",".join(e.axes), ctx),
            "count": _i64(e.count, ctx),
            "bytes": _i64(e.bytes, ctx),
        }
        entries.append(ir.DictAttr.get(fields, ctx))
    module_op.operation.attributes[EXPECTED_COLLECTIVES] = ir.ArrayAttr.get(entries, ctx)


def get_expected_collectives(module_op: ir.Operation | ir.OpView) -> tuple[ExpectedCollective, ...] | None:
    attr = _get(module_op, EXPECTED_COLLECTIVES)
    if attr is None:
        return None
    out = []
    for item in ir.ArrayAttr(attr):
        d = ir.DictAttr(item)
        axes = ir.StringAttr(d["axes"]).value
        out.append(
            ExpectedCollective(
                ir.StringAttr(d["kind"]).value,
                tuple(axes.split(",")) if axes else (),
                ir.IntegerAttr(d["count"]).value,
                ir.IntegerAttr(d["bytes"]).value,
            )
        )
    return tuple(out)

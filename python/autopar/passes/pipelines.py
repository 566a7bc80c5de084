"""The named pipelines: what `ShardParallel` and `PipeshardParallel` run, on one screen.

A pipeline is a registered pass (options with defaults and help, `--describe-pass`) whose body runs an
ordered list of named steps, each a registered pass with the options the pipeline hands it and one line
saying why it is there. `parallelize` runs `autopar-shard{...}` or `autopar-pipeshard{...}` and nothing
else, so `autopar-opt --pass-pipeline='builtin.module(autopar-pipeshard{...})'` writes exactly the module
`parallelize` runs. `expand(name, options)` shows the steps as a plain pipeline of single passes.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Sequence

from autopar.errors import PipelineError
from autopar.passes import registry
from autopar.passes.registry import Option, option_text, register_pass

Assignments = list[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a pipeline: the pass `argument` runs with `options(pipeline_options)`, because `why`."""

    argument: str
    why: str
    options: Callable[[types.SimpleNamespace], Assignments] = lambda _: []


@dataclasses.dataclass(frozen=True)
class Pipeline:
    argument: str
    summary: str
    steps: tuple[Step, ...]


PIPELINES: dict[str, Pipeline] = {}


def _step_pass(argument: str) -> registry.PassInfo:
    # Looked up when the step runs: a re-registered pass (a plugin, a test double) is the one that runs.
    info = registry.lookup(argument)
    if info is None:
        raise PipelineError(f"unknown pass '{argument}' (autopar-opt --list-passes lists them)")
    return info


def steps(argument: str, options: types.SimpleNamespace) -> list[tuple[str, Assignments]]:
    """The pipeline's steps as (pass, option assignments) for `options` (the pipeline's parsed options)."""
    return [(s.argument, s.options(options)) for s in PIPELINES[argument].steps]


def expand(argument: str, options: types.SimpleNamespace) -> str:
    """The pipeline as a plain `builtin.module(...)` of its steps (what `argument{...}` runs)."""
    parts = []
    for name, assignments in steps(argument, options):
        text = " ".join(f"{k}='{v}'" if (" " in v or not v) else f"{k}={v}" for k, v in assignments)
        parts.append(f"{name}{{{text}}}" if text else name)
    return f"builtin.module({','.join(parts)})"


def register_pipeline(
    *, argument: str, summary: str, description: str, options: Sequence[Option], steps_: Sequence[Step]
) -> None:
    """Registers a pipeline as a pass: its options are checked by each step's own check when the pipeline
    is parsed; running it runs the steps in order on the module."""
    names = [o.name for o in options]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"pipeline {argument} declares options {duplicated} twice")
    pipeline = Pipeline(argument, summary, tuple(steps_))
    PIPELINES[argument] = pipeline
    listing = "\n".join(f"  {k + 1}. {s.argument}: {s.why}" for k, s in enumerate(pipeline.steps))

    def check(opts: types.SimpleNamespace) -> None:
        for name, assignments in steps(argument, opts):
            _step_pass(name).parse_options(assignments)

    def run(module_op, opts: types.SimpleNamespace) -> None:
        for name, assignments in steps(argument, opts):
            info = _step_pass(name)
            info.run(module_op, info.parse_options(assignments))

    register_pass(
        argument=argument,
        summary=summary,
        description=f"{description.strip()}\n\nSteps, in order:\n{listing}",
        options=options,
        check=check,
    )(run)


def _forward(names: Sequence[str], renames: dict[str, str] | None = None):
    """Step options copied from the pipeline's options of the same name (or `renames[step_name]`)."""
    renames = renames or {}

    def assignments(opts: types.SimpleNamespace) -> Assignments:
        return [(n, option_text(getattr(opts, renames.get(n, n).replace("-", "_")))) for n in names]

    return assignments


def _options_of(argument: str, leave_out: Sequence[str] = ()) -> list[Option]:
    info = registry.lookup(argument)
    assert info is not None, f"{argument} must be registered before the pipelines"
    return [o for o in info.options if o.name not in leave_out]


def _forward_changed(options: Sequence[Option]):
    """Step options the pipeline was given away from their defaults (at the defaults, the step's own)."""

    def assignments(opts: types.SimpleNamespace) -> Assignments:
        given = [(o, getattr(opts, o.attr_name)) for o in options]
        return [(o.name, option_text(v)) for o, v in given if v != o.default]

    return assignments


# How much of the program the first steps may write out (a long loop, a heavy conditional): both named
# pipelines take these options and hand them on.
_UNROLL = _options_of("autopar-unroll-loops")
_FLATTEN = _options_of("autopar-flatten-conditionals")

# What both named pipelines run first: one flat @main in the form the planners plan best.
_PREPARE = (
    Step("autopar-inline", "JAX emits func.call for nested jits (relu, ...): plan one flat @main"),
    Step(
        "autopar-unroll-loops",
        "a loop over layers (lax.scan, nn.scan) has no sharding rule: write it out so its work can split",
        _forward_changed(_UNROLL),
    ),
    Step(
        "autopar-flatten-conditionals",
        "a conditional has no sharding rule either: run light, pure branches (optax.MultiSteps) side by "
        "side and select, so the values they return can stay split",
        _forward_changed(_FLATTEN),
    ),
    Step(
        "autopar-fold-transposes",
        "weight gradients as the dot computes them, without the transpose the partitioner cannot fold",
    ),
)


# ---- autopar-shard: what ShardParallel (and DataParallel, Zero2/3Parallel) runs ----------------------------

_INTRA = _options_of("autopar-intra-op")

register_pipeline(
    argument="autopar-shard",
    summary="ShardParallel's pipeline: inline, then autopar-intra-op on one mesh",
    description="""
What `parallelize(method=ShardParallel(...))` runs (DataParallel, Zero2Parallel and Zero3Parallel are
ShardParallel with option presets): the options are autopar-intra-op's, with its defaults.

Before: @main as JAX lowers it (arguments marked autopar.batch / autopar.parameter by parallelize).
After (mesh=2x4): as autopar-intra-op's example: `sdy.mesh @mesh = <["x"=2, "y"=4]>`, `sdy.sharding` on
@main's arguments and results, `sdy.sharding_constraint`s, the autopar.* plan attributes.
""",
    options=[*_INTRA, *_UNROLL, *_FLATTEN],
    steps_=[
        *_PREPARE,
        Step(
            "autopar-intra-op",
            "choose every tensor's sharding on the mesh (the ILP over Shardy's per-op strategies)",
            _forward([o.name for o in _INTRA]),
        ),
    ],
)


# ---- autopar-pipeshard: what PipeshardParallel runs -------------------------------------------------------

_LAYERS = {o.name: o for o in _options_of("autopar-cluster-layers")}
_INTER = _options_of("autopar-inter-op", leave_out=("intra-op-options",))
_STAGE = _options_of("autopar-shard-stages")
_RESHARD = {o.name: o for o in _options_of("autopar-reshard")}
# Figures of the device both steps read (device-flops, device-memory-bandwidth) whose defaults differ
# between the passes (docs/cost_model.md): one pipeline option each, handed to both steps when given; at
# 0 each step keeps its own default, so a pipeline without them plans exactly as its steps do alone.
_SHARED = tuple(o.name for o in _INTER if o.name in {s.name for s in _STAGE})


def _shared_option(name: str) -> Option:
    inter = next(o for o in _INTER if o.name == name)
    stage = next(o for o in _STAGE if o.name == name)
    assert inter.type is stage.type is float, f"{name}: a shared device figure must be a float"
    return Option(
        name,
        float,
        0.0,
        f"{inter.help} (0: each step's default, autopar-inter-op {inter.default:g} and "
        f"autopar-shard-stages {stage.default:g})",
    )


def _forward_given(names: Sequence[str]):
    """The shared figures among `names` that were given (not 0)."""

    def assignments(opts: types.SimpleNamespace) -> Assignments:
        given = [(n, getattr(opts, n.replace("-", "_"))) for n in names]
        return [(n, option_text(v)) for n, v in given if v != 0.0]

    return assignments


def _stage_options(opts: types.SimpleNamespace) -> Assignments:
    own = _forward([o.name for o in _STAGE if o.name not in _SHARED])(opts)
    return own + _forward_given(_SHARED)(opts)


def _inter_op_options(opts: types.SimpleNamespace) -> Assignments:
    """autopar-inter-op's own options, and the intra-op options that restrict strategies (only those
    not at their default), so the stage costs the DP compares are those of the plans the stages get."""
    from autopar.passes.inter_op import intra_op_costs

    out = _forward([o.name for o in _INTER if o.name not in _SHARED])(opts) + _forward_given(_SHARED)(opts)
    given = []
    for option in _STAGE:
        value = getattr(opts, option.attr_name)
        if option.name in intra_op_costs.STRATEGY_OPTIONS and value != option.default:
            given.append(f"{option.name}={option_text(value)}")
    if given:
        out.append(("intra-op-options", " ".join(given)))
    return out


register_pipeline(
    argument="autopar-pipeshard",
    summary="PipeshardParallel's pipeline: layers, stages on submeshes (Alpa's stage DP), each stage sharded",
    description="""
What `parallelize(method=PipeshardParallel(...))` runs: @main is the step of ONE micro-batch. The options
are autopar-inter-op's (cluster, micro-batches, ...), `layers` and `layer-eps` for autopar-cluster-layers
(layers=0: the boundaries placed with autopar.mark_pipeline_boundary), and autopar-intra-op's (all but
`mesh`: each stage is sharded on its own logical mesh) for the stages; the ones that restrict strategies
also reach the stage costs (autopar-inter-op's `intra-op-options`).

Before: @main as JAX lowers it for one micro-batch.
After (cluster=1x8 micro-batches=4 layers=2 num-stages=2): @main calls @stage_k_forward / _backward /
_apply (autopar-inter-op's example), each stage function sharded on `sdy.mesh @stage_k_mesh` over its
logical mesh (autopar-shard-stages' example); the plan is in autopar.inter_op.* module attributes and
every value one stage hands another read through a `stablehlo.custom_call` transfer op that carries its
cross-mesh plan (autopar-reshard's example), and the program of each stage mesh in `autopar.schedule`
(autopar-schedule's example; `schedule` is also what autopar-inter-op's memory check counts in flight).
""",
    options=[
        Option("layers", int, _LAYERS["num-layers"].default, _LAYERS["num-layers"].help),
        Option("layer-eps", float, _LAYERS["eps"].default, _LAYERS["eps"].help),
        *[o for o in _INTER if o.name not in _SHARED],
        *[o for o in _STAGE if o.name not in _SHARED],
        *[_shared_option(name) for name in _SHARED],
        _RESHARD["local-all-gather"],
        *_UNROLL,
        *_FLATTEN,
    ],
    steps_=[
        *_PREPARE,
        Step(
            "autopar-cluster-layers",
            "the stage DP chooses among contiguous layer ranges: cut the forward ops into layers, pair "
            "each backward op with its layer",
            _forward(["num-layers", "eps"], {"num-layers": "layers", "eps": "layer-eps"}),
        ),
        Step(
            "autopar-inter-op",
            "choose stages and their submeshes (Alpa's stage DP) and outline each stage's parts",
            _inter_op_options,
        ),
        Step(
            "autopar-shard-stages",
            "shard every stage on its logical mesh, so the module says how each stage runs and the "
            "runtime only compiles",
            _stage_options,
        ),
        Step(
            "autopar-reshard",
            "an explicit transfer op, with its cross-mesh plan, for every value one stage hands another, so "
            "the runtime moves each value as planned",
            _forward(["local-all-gather"]),
        ),
        Step(
            "autopar-schedule",
            "order the stages' parts over the micro-batches (1F1B or GPipe), the program each mesh runs",
            _forward(["schedule"]),
        ),
    ],
)

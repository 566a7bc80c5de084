"""The pass options, checked once into a frozen PlanConfig (the pass and `estimate` share it)."""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Sequence

from autopar import cost
from autopar.errors import PassError
from autopar.solver.orchestrate import MAX_SECONDS

_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SOLVERS = ("auto", "ilp", "heuristic")
# Counted planning work per plan, in seconds of a 2-core machine. Chosen on benchmarks/planning_budget.py
# (every small model on 8, 2x4 and 2x2x2): at 4 the 3-axis rows of the GPT and MoE ended 5-6 % above the
# best plan known, at 8 all rows are within 1 %; 1- and 2-axis problems mostly stop early, proven optimal.
DEFAULT_PLANNING_BUDGET = 8.0
# The wall-clock cap: only a machine 15x slower than the budget assumes (or as loaded) reaches it.
DEFAULT_TIME_LIMIT = 60.0


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """Everything that shapes the strategy problem.

    Attributes:
      mesh: the logical mesh and its cost model.
      memory_budget: bytes per device, 0 = unlimited.
      solver: 'auto' (exact within the budget, falling back to the best feasible), 'ilp', 'heuristic'.
      planning_budget: seconds of counted planning work (solver rounds, backtracks, nodes at rates measured
        on a 2-core machine): the plan depends on it, never on the clock or the machine's load.
      time_limit: wall-clock safety cap on planning; when it stops a phase the plan says so (clock_cut).
      force_data_parallel: batch dims of `autopar.batch` arguments and every op that carries them use
        every mesh axis.
      force_batch_dim_to_mesh_dim: -1 = off, else that mesh axis shards every batch dim.
      allow_all_gather: when false, reshards that need an all-gather are forbidden.
      allow_all_to_all: when false, all-to-all reshards are costed as all-gather + slice.
      prefer_reduce_scatter: adds strategies that leave partial sums reduce-scattered instead of
        all-reduced.
      zero_stage: 0, 2 (optimizer state sharded over the data-parallel axes) or 3 (parameters too).
      allow_replicated_parameters: when false, `autopar.parameter` arguments must be sharded.
      allow_recompute_heavy_op: when false (Alpa's default), dots and convolutions are split over every
        active mesh axis that can split them.
      keep_input_shardings: arguments with `autopar.input_sharding` keep that layout (off for the coarse
        meshes families.py plans on, whose axes are not the input's).
      plan_family: () = solve; else one role per active mesh axis (families.ROLES: data, model, zero2,
        zero3) and the plan is that family's (families.py), priced by the same model: a fixed plan to
        compare (benchmarks/cost_model.py).
    """

    mesh: cost.MeshModel
    memory_budget: int = 0
    solver: str = "auto"
    planning_budget: float = DEFAULT_PLANNING_BUDGET
    time_limit: float = DEFAULT_TIME_LIMIT
    force_data_parallel: bool = False
    force_batch_dim_to_mesh_dim: int = -1
    allow_all_gather: bool = True
    allow_all_to_all: bool = True
    prefer_reduce_scatter: bool = False
    zero_stage: int = 0
    allow_replicated_parameters: bool = True
    allow_recompute_heavy_op: bool = False
    keep_input_shardings: bool = True
    plan_family: tuple[str, ...] = ()

    @property
    def active_axes(self) -> tuple[int, ...]:
        """Mesh axes of size > 1: the only ones worth assigning."""
        return tuple(a for a, s in enumerate(self.mesh.shape) if s > 1)


def parse_mesh_shape(text: str) -> tuple[int, ...]:
    parts = text.strip().lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise PassError(f"mesh '{text}' is not a shape like 8, 2x4 or 2x2x2") from None
    if not 1 <= len(shape) <= 3 or any(s < 1 for s in shape):
        raise PassError(f"mesh '{text}' must have 1 to 3 axes of size >= 1 (like 8, 2x4 or 2x2x2)")
    return shape


def _parse_floats(text: str, what: str, n: int) -> tuple[float, ...] | None:
    if not text.strip():
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise PassError(f"{what} '{text}' must be a number or a comma list of numbers") from None
    if len(values) not in (1, n):
        raise PassError(f"{what} '{text}' gives {len(values)} values for a {n}-axis mesh (give 1 or {n})")
    if any(v < 0 for v in values):
        raise PassError(f"{what} '{text}' must be >= 0")
    return values * n if len(values) == 1 else values


def _parse_axis_names(text: str, n: int) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",")) if text.strip() else ()
    if len(names) < n:
        raise PassError(f"axis-names '{text}' names {len(names)} axes, the mesh has {n}")
    names = names[:n]
    for name in names:
        if not _AXIS_NAME.match(name):
            raise PassError(f"axis name '{name}' must be an identifier")
    if len(set(names)) != n:
        raise PassError(f"axis-names '{text}' repeats a name")
    return names


FAMILY_ROLES = ("data", "model", "zero2", "zero3")  # families.ROLES (families imports this module)


def _parse_family(value, mesh: cost.MeshModel) -> tuple[str, ...]:
    roles = (
        tuple(value) if isinstance(value, tuple | list) else tuple(r.strip() for r in str(value).split(","))
    )
    roles = tuple(r for r in roles if r)
    if not roles:
        return ()
    active = sum(1 for s in mesh.shape if s > 1)
    bad = [r for r in roles if r not in FAMILY_ROLES]
    if bad or len(roles) != active:
        raise PassError(
            f"plan-family '{','.join(roles)}' needs one role of {', '.join(FAMILY_ROLES)} per mesh axis of "
            f"size > 1 ({active} on mesh {'x'.join(map(str, mesh.shape))})"
        )
    return roles


def from_options(options: types.SimpleNamespace | dict) -> PlanConfig:
    """Builds the config from the pass options (or the same names as keyword arguments)."""
    o = dict(vars(options)) if isinstance(options, types.SimpleNamespace) else dict(options)
    get = lambda key, default: o.get(key, default)  # noqa: E731
    mesh_value = get("mesh", "1x8")
    shape = (
        tuple(mesh_value)
        if isinstance(mesh_value, Sequence) and not isinstance(mesh_value, str)
        else parse_mesh_shape(str(mesh_value))
    )
    n = len(shape)
    alpha = _parse_floats(str(get("mesh_alpha", "")), "mesh-alpha", n)
    beta = _parse_floats(str(get("mesh_beta", "")), "mesh-beta", n)
    try:
        device = cost.DeviceModel(
            flops=float(get("device_flops", cost.DEFAULT_DEVICE_FLOPS)),
            memory_bandwidth=float(get("device_memory_bandwidth", cost.DEFAULT_DEVICE_MEMORY_BANDWIDTH)),
        )
    except ValueError:
        raise PassError("device-flops and device-memory-bandwidth must be > 0") from None
    profile = str(get("cluster_profile", ""))
    collectives, tables = None, ()
    if profile:
        try:
            overrides, device = cost.load_profile(profile, shape)
        except ValueError as err:
            raise PassError(str(err)) from None
        # Options mesh-alpha / mesh-beta win over the profile's mesh figures, its per-collective ones too.
        if alpha is None and beta is None:
            collectives = overrides.get("collectives")
            tables = overrides.get("tables", ())
        alpha = alpha or overrides.get("alpha")
        beta = beta or overrides.get("beta")
    if get("widen_collectives", False):
        device = dataclasses.replace(device, widened_collectives=True)
    mesh = cost.make_mesh(
        shape,
        _parse_axis_names(str(get("axis_names", "x,y,z")), n),
        alpha=alpha,
        beta=beta,
        device=device,
        collectives=collectives,
        tables=tables,
    )
    return _checked(mesh, o, get)


def _checked(mesh: cost.MeshModel, o: dict, get) -> PlanConfig:
    known = {f.name for f in dataclasses.fields(PlanConfig)} | {
        "mesh_alpha",
        "mesh_beta",
        "axis_names",
        "device_flops",
        "device_memory_bandwidth",
        "cluster_profile",
        "widen_collectives",
    }
    unknown = sorted(set(o) - known)
    if unknown:
        raise PassError(f"unknown autopar-intra-op option(s) {', '.join(unknown)}")
    solver = str(get("solver", "auto"))
    if solver not in SOLVERS:
        raise PassError(f"solver '{solver}' is not one of {', '.join(SOLVERS)}")
    time_limit = float(get("time_limit", DEFAULT_TIME_LIMIT))
    if not 0 < time_limit <= MAX_SECONDS:
        raise PassError(f"time-limit must be > 0 and at most {MAX_SECONDS:g} seconds, got {time_limit}")
    planning_budget = float(get("planning_budget", DEFAULT_PLANNING_BUDGET))
    if not 0 < planning_budget <= MAX_SECONDS:
        raise PassError(
            f"planning-budget must be > 0 and at most {MAX_SECONDS:g} seconds, got {planning_budget}"
        )
    budget = int(get("memory_budget", 0))
    if budget < 0:
        raise PassError(f"memory-budget must be >= 0 bytes (0 = none), got {budget}")
    zero = int(get("zero_stage", 0))
    if zero not in (0, 2, 3):
        raise PassError(f"zero-stage must be 0, 2 or 3, got {zero}")
    batch_axis = int(get("force_batch_dim_to_mesh_dim", -1))
    if not -1 <= batch_axis < len(mesh.shape):
        raise PassError(
            f"force-batch-dim-to-mesh-dim={batch_axis} is not a mesh axis of mesh {mesh.shape} "
            "(use -1 to disable)"
        )
    family = _parse_family(get("plan_family", ""), mesh)
    return PlanConfig(
        mesh=mesh,
        plan_family=family,
        memory_budget=budget,
        solver=solver,
        planning_budget=planning_budget,
        time_limit=time_limit,
        force_data_parallel=bool(get("force_data_parallel", False)),
        force_batch_dim_to_mesh_dim=batch_axis,
        allow_all_gather=bool(get("allow_all_gather", True)),
        allow_all_to_all=bool(get("allow_all_to_all", True)),
        prefer_reduce_scatter=bool(get("prefer_reduce_scatter", False)),
        zero_stage=zero,
        allow_replicated_parameters=bool(get("allow_replicated_parameters", True)),
        allow_recompute_heavy_op=bool(get("allow_recompute_heavy_op", False)),
    )


def splits_batches(force_data_parallel: bool, zero_stage: int, force_batch_dim_to_mesh_dim: int) -> bool:
    """Whether these options force batch dims onto mesh axes (problem.py's `_required_batch_axes`): only
    then does marking a function's per-example arguments `autopar.batch` change its plan (a pipeline stage
    or a layer planned alone has no batch argument of its own)."""
    return bool(force_data_parallel) or zero_stage in (2, 3) or force_batch_dim_to_mesh_dim >= 0


def restricts_parameters(allow_replicated_parameters: bool, zero_stage: int) -> bool:
    """Whether these options restrict the layouts of `autopar.parameter` arguments (problem.py's
    `_parameter_filter`): only then does marking a function's parameters change its plan."""
    return not allow_replicated_parameters or zero_stage in (2, 3)

"""`autopar.parallelize`: a `jax.jit`-like wrapper that plans, compiles and runs a function on a mesh.

For each input signature (pytree structure, shapes, dtypes, static arguments) the function is lowered by
JAX, its arguments are marked as batch or parameter, the method's pass pipeline writes the sharding plan
into the module, XLA compiles it for the mesh, and the executable is cached. Calls place each argument
with its planned NamedSharding and return jax.Arrays with the planned output shardings.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import PartitionSpec
from jaxlib.mlir import ir

from autopar import passes
from autopar.api import pipeshard
from autopar.api.methods import AutoShardingOption, ShardParallel
from autopar.api.plan import ExecutionPlan, ExpectedCollective, TensorPlacement
from autopar.errors import ArgumentError, AutoparError, PassError, PipelineError
from autopar.ir import attrs
from autopar.ir.lowering import module_from_lowered
from autopar.progress import Progress
from autopar.runtime import executable as rt_exe
from autopar.runtime import shardings as sh
from autopar.runtime.hlo import parse_collectives
from autopar.runtime.mesh import check_mesh_shape, format_shape
from autopar.runtime.sequential import SequentialExecutor


def parallelize(
    fn: Callable[..., Any] | None = None,
    *,
    method: ShardParallel | pipeshard.PipeshardParallel | None = None,
    devices: Sequence[jax.Device] | None = None,
    static_argnums: int | Sequence[int] = (),
    donate_argnums: int | Sequence[int] = (),
    batch_argnums: int | Sequence[int] = (1,),
) -> Any:
    """Parallelizes `fn` over `devices` (default: all local devices) with `method` (default ShardParallel).

    Usable as `parallelize(fn, ...)`, `@parallelize` or `@parallelize(method=...)`. Arguments at
    `batch_argnums` are data batches (dim 0 is the batch dim); every other array argument is a parameter or
    optimizer state. The result runs like `jax.jit(fn)` and has `lower`, `get_execution_plan`.
    """
    options = dict(
        method=method,
        devices=devices,
        static_argnums=static_argnums,
        donate_argnums=donate_argnums,
        batch_argnums=batch_argnums,
    )
    if fn is None:
        return functools.partial(parallelize, **options)
    if not callable(fn):
        raise TypeError(f"parallelize expects a function, got {type(fn).__name__}")
    return ParallelizedFunction(fn, **options)


def _argnums(value: int | Sequence[int], name: str) -> tuple[int, ...]:
    nums = (value,) if isinstance(value, int) else tuple(value)
    for n in nums:
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be non-negative ints, got {value!r}")
    return tuple(sorted(set(nums)))


@dataclasses.dataclass
class _Entry:
    """Everything cached for one input signature."""

    in_tree: Any
    out_tree: Any
    roles: tuple[str, ...]
    paths: tuple[str, ...]
    module: ir.Module  # the planned (annotated) module
    out_keys: tuple[Any, ...]  # per output leaf: the PRNG implementation of a key output, else None
    host_callbacks: tuple[Any, ...] = ()  # Python callbacks JAX's lowering registered (jax.debug.print)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds: lower, plan, compile
    executable: rt_exe.ShardedExecutable | SequentialExecutor | None = None


def _user_facing(method: Callable[..., Any]) -> Callable[..., Any]:
    """autopar's own errors surface at the user's call: the frames inside autopar and its passes are
    dropped from the traceback (a bug, any other exception, keeps all of them)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except AutoparError as err:
            raise err.with_traceback(None) from None

    return wrapper


class ParallelizedFunction:
    """The function `parallelize` returns. Call it like the original function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        method: ShardParallel | pipeshard.PipeshardParallel | None,
        devices: Sequence[jax.Device] | None,
        static_argnums: int | Sequence[int],
        donate_argnums: int | Sequence[int],
        batch_argnums: int | Sequence[int],
    ):
        self.fn = fn
        self.method = ShardParallel() if method is None else method
        self._pipeshard = isinstance(self.method, pipeshard.PipeshardParallel)
        if not isinstance(self.method, ShardParallel) and not self._pipeshard:
            raise TypeError(
                "method must be a ShardParallel (or subclass) or a PipeshardParallel, got "
                f"{type(self.method).__name__}"
            )
        self.devices = tuple(jax.local_devices() if devices is None else devices)
        if not self.devices:
            raise ValueError("devices is empty: give at least one device")
        if self._pipeshard:
            self.cluster = self.method.cluster_for(len(self.devices))
            self.mesh_shape, self.axis_names = self.cluster, ("host", "device")
        else:
            self.mesh_shape, self.axis_names = self.method.mesh_for(len(self.devices))
            check_mesh_shape(self.mesh_shape, self.axis_names, len(self.devices))
        self.static_argnums = _argnums(static_argnums, "static_argnums")
        self.donate_argnums = _argnums(donate_argnums, "donate_argnums")
        self._batch_explicit = batch_argnums != (1,)
        self.batch_argnums = _argnums(batch_argnums, "batch_argnums")
        if not self._batch_explicit:  # the default (1,) simply does not apply to a static argument
            self.batch_argnums = tuple(i for i in self.batch_argnums if i not in self.static_argnums)
        for name, nums in (("donate_argnums", self.donate_argnums), ("batch_argnums", self.batch_argnums)):
            if overlap := set(nums) & set(self.static_argnums):
                raise ValueError(
                    f"{name} {sorted(overlap)} are also static_argnums: an argument is one or other"
                )
        self._cache: dict[Hashable, _Entry] = {}
        functools.update_wrapper(self, fn)

    # ---- jax.jit-like surface -------------------------------------------------------------------------

    @_user_facing
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        entry = self._cache.get(self._signature(args, kwargs))
        if entry is None or entry.executable is None:  # a first call: plan and compile (shown when slow)
            with self._progress() as progress:
                entry = self._entry(args, kwargs, progress)
                progress.stage("compiling with XLA")
                self._executable(entry)
        return self._run(entry, args, kwargs)

    @_user_facing
    def lower(self, *args: Any, **kwargs: Any) -> Lowered:
        """Plans for these arguments (arrays or jax.ShapeDtypeStruct) without running."""
        with self._progress() as progress:
            return Lowered(self, self._entry(args, kwargs, progress))

    def _progress(self) -> Progress:
        mesh = format_shape(self.mesh_shape)
        return Progress(f"{self.method.name} of {self.__name__} on mesh {mesh}")

    @_user_facing
    def get_execution_plan(
        self, *args: Any, **kwargs: Any
    ) -> ExecutionPlan | pipeshard.PipeshardExecutionPlan:
        """The plan for these arguments (compiles, cached, to read the collectives XLA emitted).

        For PipeshardParallel: the stages (layers, submesh, device ids, logical mesh, estimated cost) read
        from the plan, without compiling."""
        entry = self._entry(args, kwargs)
        if self._pipeshard:
            return pipeshard.read_plan(entry.module, self.method, self.cluster)
        return _execution_plan(self.method.name, entry, self._executable(entry))

    def cache_size(self) -> int:
        """Number of input signatures planned so far."""
        return len(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()

    # ---- signature, lowering, planning ----------------------------------------------------------------

    def _split(self, args: tuple[Any, ...]) -> tuple[list[int], tuple[Any, ...]]:
        for i in self.static_argnums:
            if i >= len(args):
                raise ValueError(
                    f"static_argnums has {i} but {self.__name__} was called with {len(args)} arguments"
                )
        dynamic = [i for i in range(len(args)) if i not in self.static_argnums]
        statics = tuple(args[i] for i in self.static_argnums)
        return dynamic, statics

    def _signature(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        dynamic, statics = self._split(args)
        leaves, treedef = jax.tree.flatten((tuple(args[i] for i in dynamic), kwargs))
        for i, value in zip(self.static_argnums, statics, strict=True):
            try:
                hash(value)
            except TypeError:
                raise TypeError(
                    f"static argument {i} of {self.__name__} has unhashable type {type(value).__name__}: "
                    "static arguments key the cache, pass a hashable value"
                ) from None
        return treedef, tuple(_aval_key(x) for x in leaves), statics

    def _entry(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], progress: Progress | None = None
    ) -> _Entry:
        key = self._signature(args, kwargs)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._plan(args, kwargs, progress)
            self._cache[key] = entry
        return entry

    def _plan(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], progress: Progress | None = None
    ) -> _Entry:
        if progress is not None:
            progress.stage("tracing and lowering")
        if self._batch_explicit:
            for i in self.batch_argnums:
                if i >= len(args):
                    raise ValueError(
                        f"batch_argnums has {i} but {self.__name__} was called with {len(args)} arguments"
                    )
        jitted = jax.jit(
            self.fn, static_argnums=self.static_argnums, donate_argnums=self.donate_argnums, keep_unused=True
        )
        # Planned from shapes and dtypes only: an argument's current placement (a sharded jax.Array, a
        # restored checkpoint) must not leak its mesh into the module, and every placement shares the plan.
        abstract_args = self._abstract(args)
        abstract_kwargs = jax.tree.map(_abstract, kwargs)
        started = time.perf_counter()
        if self._pipeshard:  # autopar-inter-op plans the step of one micro-batch (as Alpa traces it)
            lowered = jitted.lower(*self._micro_batch_args(abstract_args), **abstract_kwargs)
        else:
            lowered = jitted.lower(*abstract_args, **abstract_kwargs)
        module = module_from_lowered(lowered)
        dynamic, _ = self._split(args)
        flat_avals = [a._aval for a in jax.tree.leaves(lowered.args_info)]
        roles, paths = self._roles_and_paths(args, kwargs, dynamic, flat_avals)
        main = sh.main_func(module)
        if len(main.type.inputs) != len(roles) or len(main.type.results) != lowered.out_tree.num_leaves:
            raise AutoparError(
                f"{self.__name__} lowered to a @main with {len(main.type.inputs)} arguments and "
                f"{len(main.type.results)} results for {len(roles)} inputs and {lowered.out_tree.num_leaves} "
                "outputs (side effects or tokens?): only pure functions can be parallelized"
            )
        _mark_roles(module, roles, paths)
        if self._pipeshard and self.method.num_micro_batches > 1:
            # How each value combines over micro-batches, from the same step at twice the micro-batch.
            twice = jitted.lower(*self._micro_batch_args(abstract_args, scale=2), **abstract_kwargs)
            size = pipeshard.batch_size(abstract_args, self.batch_argnums) or 0
            pipeshard.label_micro_batches(
                module, module_from_lowered(twice), size // self.method.num_micro_batches
            )
        lowered_at = time.perf_counter()
        if progress is not None:
            progress.stage("planning")
        out_keys = tuple(_key_impl(leaf) for leaf in jax.tree.leaves(lowered.out_info))
        callbacks = _host_callbacks(lowered)
        if self._pipeshard:
            if callbacks:
                raise AutoparError(
                    f"{self.__name__} calls back into Python (jax.debug.print, jax.pure_callback, ...): "
                    "PipeshardParallel cannot run host callbacks inside stages yet; remove them or use "
                    "ShardParallel"
                )
            self._run_pipeline(module, self.method.pipeline(self.cluster))
            timings = {"lower": lowered_at - started, "plan": time.perf_counter() - lowered_at}
            return _Entry(lowered.in_tree, lowered.out_tree, roles, paths, module, out_keys, (), timings)
        if self.method.manual_sharding_option is not None:
            self._annotate_manual(module, args, kwargs, dynamic, lowered)
        else:
            self._run_pipeline(module, self.method.pipeline(self.mesh_shape, self.axis_names))
        self._check_planned_mesh(module)
        timings = {"lower": lowered_at - started, "plan": time.perf_counter() - lowered_at}
        return _Entry(lowered.in_tree, lowered.out_tree, roles, paths, module, out_keys, callbacks, timings)

    def _abstract(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            a if i in self.static_argnums else jax.tree.map(_abstract, a) for i, a in enumerate(args)
        )

    def _run_pipeline(self, module: ir.Module, pipeline: str) -> None:
        """Runs the method's pipeline; a pass's refusal becomes an error in the API's own terms (its option
        names, the method), raised from the user's call without the passes' traceback."""
        try:
            passes.run(module, pipeline)
        except (PassError, PipelineError) as err:
            raise type(err)(_in_api_terms(str(err), self.method)) from None

    def _micro_batch_args(self, args: tuple[Any, ...], scale: int = 1) -> list[Any]:
        """`args` with every batch leaf abstract at `scale`/B of its dim 0 (pipeshard.is_batch_leaf: PRNG
        keys and leaves of another leading size stay whole)."""
        B = self.method.num_micro_batches
        names = _positional_names(self.fn, len(args))
        size = pipeshard.batch_size(args, self.batch_argnums)
        out = list(args)
        for i in self.batch_argnums:
            if i >= len(args):
                continue

            def split(path: Any, x: Any, i: int = i) -> Any:
                if not pipeshard.is_batch_leaf(x, size):
                    return x
                shape, dtype = np.shape(x), x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
                if shape[0] % B:
                    raise ArgumentError(
                        f"{names[i]}{jax.tree_util.keystr(path)} has batch dim {shape[0]}, which {B} "
                        f"micro-batches do not divide: use a batch size divisible by num_micro_batches={B}"
                    )
                return jax.ShapeDtypeStruct((shape[0] // B * scale, *shape[1:]), dtype)

            out[i] = jax.tree_util.tree_map_with_path(split, args[i])
        return out

    def _roles_and_paths(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], dynamic: list[int], avals: list[Any]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        names = _positional_names(self.fn, len(args))
        size = pipeshard.batch_size(args, self.batch_argnums)
        roles, paths = [], []
        leaves_with_paths = jax.tree_util.tree_flatten_with_path((tuple(args[i] for i in dynamic), kwargs))[0]
        for (path, leaf), aval in zip(leaves_with_paths, avals, strict=True):
            if path[0].idx == 0:  # a positional argument
                position = dynamic[path[1].idx]
                head = names[position]
                rest = path[2:]
                is_batch = position in self.batch_argnums and len(aval.shape) >= 1
                is_batch = is_batch and pipeshard.is_batch_leaf(leaf, size)
            else:  # a keyword argument
                head, rest, is_batch = str(path[1].key), path[2:], False
            roles.append("batch" if is_batch else "parameter")
            paths.append(head + jax.tree_util.keystr(tuple(rest)))
        return tuple(roles), tuple(paths)

    def _annotate_manual(
        self,
        module: ir.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        dynamic: list[int],
        lowered: Any,
    ) -> None:
        manual = self.method.manual_sharding_option
        assert manual is not None
        dyn_args = tuple(args[i] for i in dynamic)
        in_specs = _broadcast_specs(manual.in_axis_resources, dyn_args, "in_axis_resources") + [None] * len(
            jax.tree.leaves(kwargs)
        )
        out_shapes = jax.tree.unflatten(lowered.out_tree, [0] * lowered.out_tree.num_leaves)
        out_specs = _broadcast_specs(manual.out_axis_resources, out_shapes, "out_axis_resources")
        mesh = sh.MeshSpec("mesh", self.axis_names, self.mesh_shape)
        for spec in in_specs + out_specs:
            for entry in spec or ():
                for axis in (entry,) if isinstance(entry, str) else (entry or ()):
                    if axis not in self.axis_names:
                        raise ValueError(
                            f"PartitionSpec {spec} names axis {axis!r}; the mesh has {self.axis_names}"
                        )
        sh.annotate_main(
            module, mesh, [s or PartitionSpec() for s in in_specs], [s or PartitionSpec() for s in out_specs]
        )

    def _check_planned_mesh(self, module: ir.Module) -> None:
        meshes = sh.module_meshes(module)
        if not meshes:
            raise AutoparError("the plan wrote no sdy.mesh into the module; nothing says how to run it")
        for mesh in meshes.values():
            if not mesh.axis_names:
                continue  # a maximal mesh: where JAX runs a side effect (jax.debug.print), not a layout
            if math.prod(mesh.shape) != len(self.devices):
                raise AutoparError(
                    f"the plan's mesh @{mesh.name} {format_shape(mesh.shape)} does not cover the "
                    f"{len(self.devices)} devices of the {format_shape(self.mesh_shape)} mesh asked for"
                )

    # ---- compile and run ------------------------------------------------------------------------------

    def _executable(self, entry: _Entry) -> rt_exe.ShardedExecutable | SequentialExecutor:
        if entry.executable is None:
            started = time.perf_counter()
            if self._pipeshard:
                names = pipeshard.output_paths(entry.out_tree)
                declared = dict(self.method.output_combine)
                for path in declared:
                    if path not in names:
                        raise ValueError(
                            f"output_combine names output {path!r}, which {self.__name__} does not return; "
                            f"its outputs are {names}"
                        )
                entry.executable = SequentialExecutor(
                    entry.module,
                    self.devices,
                    output_combine={i: declared[p] for i, p in enumerate(names) if p in declared},
                    approximate_combine=self.method.approximate_combine,
                    output_names=names,
                )
            else:
                entry.executable = rt_exe.compile(entry.module, self.devices, entry.host_callbacks)
            entry.timings["compile"] = time.perf_counter() - started
        return entry.executable

    def _run(self, entry: _Entry, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        exe = self._executable(entry)
        dynamic, _ = self._split(args)
        # Typed PRNG keys travel as their key data, as @main declares them (tensor<2xui32> per key).
        flat = [_key_data(x) for x in jax.tree.leaves((tuple(args[i] for i in dynamic), kwargs))]
        outputs = exe(*flat) if self._pipeshard else exe(flat)
        if self._pipeshard:  # jax.jit's executables consume donated buffers; the stages copy them
            _delete_donated([args[i] for i in self.donate_argnums if i < len(args)], outputs)
        outputs = [
            x if impl is None else jax.random.wrap_key_data(x, impl=impl)
            for x, impl in zip(outputs, entry.out_keys, strict=True)
        ]
        return jax.tree.unflatten(entry.out_tree, outputs)


class Lowered:
    """`f.lower(*args)`: the planned module for one signature (jax.stages.Lowered's role)."""

    def __init__(self, function: ParallelizedFunction, entry: _Entry):
        self._function = function
        self._entry = entry

    @property
    def module(self) -> ir.Module:
        return self._entry.module

    @property
    def timings(self) -> dict[str, float]:
        """Seconds spent on this signature: `lower` (JAX tracing and lowering), `plan` (the method's
        passes), and `compile` (XLA) once compiled."""
        return dict(self._entry.timings)

    def as_text(self, *, debug_info: bool = False) -> str:
        """The annotated StableHLO: `sdy.mesh`, `sdy.sharding` on @main, constraints, plan attributes."""
        return self._entry.module.operation.get_asm(enable_debug_info=debug_info)

    def compile(self) -> Compiled:
        return Compiled(self._function, self._entry, self._function._executable(self._entry))


class Compiled:
    """`f.lower(*args).compile()`: the XLA executable for one signature; callable with concrete args."""

    def __init__(self, function: ParallelizedFunction, entry: _Entry, executable: rt_exe.ShardedExecutable):
        self._function = function
        self._entry = entry
        self.executable = executable

    def as_text(self) -> str:
        """XLA's compiled, partitioned HLO."""
        return self.executable.as_text()

    def cost_analysis(self) -> dict[str, float]:
        return self.executable.cost_analysis()

    def memory_analysis(self) -> Any:
        return self.executable.memory_analysis()

    @property
    def input_shardings(self) -> Any:
        return jax.tree.unflatten(self._entry.in_tree, self.executable.in_shardings)

    @property
    def output_shardings(self) -> Any:
        return jax.tree.unflatten(self._entry.out_tree, self.executable.out_shardings)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = self._function._signature(args, kwargs)
        if self._function._cache.get(key) is not self._entry:
            raise TypeError("arguments do not match the signature this executable was compiled for")
        return self._function._run(self._entry, args, kwargs)


# ---- helpers --------------------------------------------------------------------------------------------


def _delete_donated(donated: list[Any], outputs: Sequence[Any]) -> None:
    """Deletes the donated arrays, as jax.jit does (an output that is the very same array survives)."""
    kept = {id(x) for x in outputs}
    for leaf in jax.tree.leaves(donated):
        if isinstance(leaf, jax.Array) and id(leaf) not in kept and not leaf.is_deleted():
            leaf.delete()


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    """Shape, dtype and weak type of an argument leaf, without its sharding."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, weak_type=bool(getattr(x, "weak_type", False)))
    try:
        aval = jax.typeof(x)
    except TypeError:
        raise TypeError(
            f"argument leaf of type {type(x).__name__} is not an array: pass arrays, scalars or "
            "jax.ShapeDtypeStruct, or make the argument static (static_argnums)"
        ) from None
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


def _in_api_terms(message: str, method: Any) -> str:
    """A pass message in the words of `parallelize`'s API: pass options become the fields users set
    (`force-data-parallel` -> `force_data_parallel`, set by DataParallel), layer clustering points to
    `layer_option`."""
    if "autopar-cluster-layers needs num-layers" in message:
        return (
            f"{method.name} needs the step cut into layers: pass "
            "layer_option=AutoLayerOption(layer_num=N), or mark the boundaries yourself with "
            "autopar.mark_pipeline_boundary() and layer_option='manual'"
        )
    fields = {f.name for f in dataclasses.fields(AutoShardingOption)}

    def rename(match: re.Match) -> str:
        name = match.group(0).replace("-", "_")
        return name if name in fields else match.group(0)

    message = re.sub(r"\b[a-z]+(?:-[a-z]+)+\b", rename, message)
    message = message.replace("pass 'autopar-intra-op' failed: ", "").replace(
        "autopar-intra-op", "the planner"
    )
    if method.name in ("DataParallel", "Zero2Parallel", "Zero3Parallel"):  # they set force_data_parallel
        message = message.replace("force_data_parallel", f"{method.name} (force_data_parallel)", 1)
    return f"{method.name}: {message}"


def _host_callbacks(lowered: Any) -> tuple[Any, ...]:
    """The Python callbacks JAX registered while lowering (`jax.debug.print` lowers to a custom call that
    names its callback by index). jax keeps them with its private lowering object; jax is pinned, and the
    tests run a step with `jax.debug.print`."""
    lowering = getattr(lowered, "_lowering", None)
    compile_args = getattr(lowering, "compile_args", None) or {}
    return tuple(compile_args.get("host_callbacks", ()))


def _is_key(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _key_data(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    return jax.random.key_data(x) if dtype is not None and _is_key(dtype) else x


def _key_impl(leaf: Any) -> Any:
    """The PRNG implementation of a typed-key output (to wrap its data back), else None."""
    return leaf.dtype._impl if _is_key(leaf.dtype) else None


def _aval_key(x: Any) -> tuple[Any, ...]:
    """What of an argument leaf keys the plan cache: exactly what the plan is made from."""
    abstract = _abstract(x)
    return tuple(abstract.shape), abstract.dtype, bool(abstract.weak_type)


def _positional_names(fn: Callable[..., Any], n: int) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = []
    for i in range(n):
        if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY, params[i].POSITIONAL_OR_KEYWORD):
            names.append(params[i].name)
        else:
            names.append(f"args[{i}]")
    return names


def _is_spec_leaf(x: Any) -> bool:
    return x is None or isinstance(x, PartitionSpec)


def _broadcast_specs(prefix: Any, tree: Any, what: str) -> list[PartitionSpec | None]:
    try:
        full = jax.tree.broadcast(prefix, tree, is_leaf=_is_spec_leaf)
    except ValueError as err:
        raise ValueError(f"{what} is not a pytree prefix of the arguments it describes: {err}") from None
    return jax.tree.leaves(full, is_leaf=_is_spec_leaf)


def _mark_roles(module: ir.Module, roles: Sequence[str], paths: Sequence[str] = ()) -> None:
    """Marks every @main argument as batch or parameter and, when given, names it by its pytree path
    (`autopar.path`, which the passes' messages use)."""
    main = sh.main_func(module)
    marks = []
    for i in range(len(main.type.inputs)):
        batch = i < len(roles) and roles[i] == "batch"
        marks.append(attrs.ArgumentMarks(batch, not batch, paths[i] if i < len(paths) else None))
    attrs.set_argument_marks(main, marks)


def _partition_grid(exe: rt_exe.ShardedExecutable) -> Any:
    """The XLA partition id at each mesh position."""
    index = {d.id: i for i, d in enumerate(exe.devices)}
    return np.vectorize(lambda d: index[d.id], otypes=[int])(exe.mesh.devices)


def _execution_plan(method_name: str, entry: _Entry, exe: rt_exe.ShardedExecutable) -> ExecutionPlan:
    mesh_shape = dict(exe.mesh.shape)
    inputs = tuple(
        TensorPlacement(path, aval.shape, str(aval.dtype), s.spec, role)
        for path, aval, s, role in zip(entry.paths, exe.in_avals, exe.in_shardings, entry.roles, strict=True)
    )
    out_paths = [
        "out" + jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_flatten_with_path(
            jax.tree.unflatten(entry.out_tree, [0] * entry.out_tree.num_leaves)
        )[0]
    ]
    outputs = tuple(
        TensorPlacement(path, aval.shape, str(aval.dtype), s.spec, "output")
        for path, aval, s in zip(out_paths, exe.out_avals, exe.out_shardings, strict=True)
    )
    result = attrs.get_intra_op_result(entry.module.operation)  # None: a manual plan, nothing was solved
    return ExecutionPlan(
        method=method_name,
        mesh_shape=mesh_shape,
        device_ids=tuple(d.id for d in exe.mesh.devices.flat),
        inputs=inputs,
        outputs=outputs,
        collectives=tuple(parse_collectives(exe.as_text(), mesh_shape, _partition_grid(exe))),
        estimated_cost=result.objective if result else None,
        lower_bound=result.lower_bound if result else None,
        solver_status=result.solver_status if result else "manual",
        expected_collectives=_expected_collectives(entry.module),
        remarks=result.remarks if result else (),
    )


def _expected_collectives(module: ir.Module) -> tuple[ExpectedCollective, ...]:
    return tuple(
        ExpectedCollective(e.kind, e.axes, e.count, e.bytes)
        for e in attrs.get_expected_collectives(module.operation) or ()
    )

"""`autopar.parallelize`: a `jax.jit`-like wrapper that plans, compiles and runs a function on a mesh.

For each input signature (pytree structure, shapes, dtypes, static arguments) the function is lowered by
JAX, its arguments are marked as batch or parameter, the method's pass pipeline writes the sharding plan
into the module, XLA compiles it for the mesh, and the executable is cached. Calls place each argument
with its planned NamedSharding and return jax.Arrays with the planned output shardings.

Around `ParallelizedFunction`: arguments.py (what a call's arguments give the plan and its cache key),
stages.py (the cache entry, `Lowered`, `Compiled`), plan.py (the ExecutionPlan read from a compiled
signature), user_errors.py (errors raised from the user's call, in the API's terms).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxlib.mlir import ir

from autopar import passes
from autopar.api import pipeshard, static_keywords
from autopar.api.arguments import (
    abstract,
    argnums,
    argnums_or_auto,
    auto_donate_argnums,
    auto_static_argnums,
    batch_size,
    check_call_fits,
    check_default_batch,
    check_function_and_devices,
    delete_donated,
    deleted_arguments_named,
    host_callbacks,
    impure_step_message,
    is_batch_leaf,
    key_data,
    key_impl,
    keywords_to_positions,
    leaf_keys,
    mark_roles,
    micro_batch_args,
    micro_batch_failure,
    positional_names,
)
from autopar.api.manual_sharding import annotate_manual
from autopar.api.methods import ShardParallel, as_compiled_for
from autopar.api.nnx_modules import CarryingModules, has_modules, output_names, output_paths, write_back
from autopar.api.plan import ExecutionPlan, execution_plan
from autopar.api.stages import Compiled, Entry, Lowered
from autopar.api.user_errors import in_api_terms, user_facing
from autopar.api.user_shardings import drop_user_shardings
from autopar.errors import ArgumentError, AutoparError, PassError, PipelineError
from autopar.ir import attrs
from autopar.ir.lowering import module_from_lowered
from autopar.progress import Progress
from autopar.runtime import cluster
from autopar.runtime import executable as rt_exe
from autopar.runtime import shardings as sh
from autopar.runtime.mesh import check_mesh_shape, format_shape
from autopar.runtime.processes import ProcessExecutor
from autopar.runtime.sequential import SequentialExecutor
from autopar.runtime.step import stage_meshes

__all__ = ["Compiled", "Lowered", "ParallelizedFunction", "parallelize"]


def parallelize(
    fn: Callable[..., Any] | None = None,
    *,
    method: ShardParallel | pipeshard.PipeshardParallel | None = None,
    devices: Sequence[jax.Device] | None = None,
    static_argnums: int | Sequence[int] | str = (),
    static_argnames: str | Sequence[str] = (),
    donate_argnums: int | Sequence[int] | str = (),
    batch_argnums: int | Sequence[int] | None = None,
) -> Any:
    """Parallelizes `fn` over `devices` (default: all local devices) with `method` (default ShardParallel).

    Usable as `parallelize(fn, ...)`, `@parallelize` or `@parallelize(method=...)`. Arguments at
    `batch_argnums` are data batches (dim 0 is the batch dim; by default (1,), as Alpa's, refused where the
    step returns that argument updated); every other array argument is a parameter or optimizer state.
    The result runs like `jax.jit(fn)` and has `lower`, `get_execution_plan`; `static_argnames` are jax.jit's.
    `static_argnums="auto"` and `donate_argnums="auto"` choose them as Alpa did, from the first call.
    """
    options = dict(
        method=method,
        devices=devices,
        static_argnums=static_argnums,
        static_argnames=static_argnames,
        donate_argnums=donate_argnums,
        batch_argnums=batch_argnums,
    )
    if fn is None:
        return functools.partial(parallelize, **options)
    options["devices"] = check_function_and_devices(fn, devices)
    return ParallelizedFunction(fn, **options)


class ParallelizedFunction:
    """The function `parallelize` returns. Call it like the original function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        method: ShardParallel | pipeshard.PipeshardParallel | None,
        devices: Sequence[jax.Device] | None,
        static_argnums: int | Sequence[int] | str,
        static_argnames: str | Sequence[str],
        donate_argnums: int | Sequence[int] | str,
        batch_argnums: int | Sequence[int] | None,
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
        # What XLA on these devices compiles is what the plan prices (methods.as_compiled_for).
        self.method, self._remarks = as_compiled_for(self.method, self.devices[0].platform)
        if self._pipeshard:
            self.cluster = self.method.cluster_for(len(self.devices))
            self.mesh_shape, self.axis_names = self.cluster, ("host", "device")
        else:
            self.mesh_shape, self.axis_names = self.method.mesh_for(len(self.devices))
            check_mesh_shape(self.mesh_shape, self.axis_names, len(self.devices))
        # "auto" (Alpa's, None here): chosen from the first call's arguments, then fixed (_split).
        static = argnums_or_auto(static_argnums, "static_argnums")
        donate = argnums_or_auto(donate_argnums, "donate_argnums")
        self._static_auto, self._donate_auto = static is None, donate is None
        named_positions, self._static_keywords = static_keywords.resolve(fn, static_argnames)
        self._static_keywords_auto = static is None  # Alpa's rule for keyword arguments too
        self.static_argnums = tuple(dict.fromkeys((*(static or ()), *named_positions)))
        self.donate_argnums = donate or ()
        self._batch_explicit = batch_argnums is not None
        self._batch_given = argnums((1,) if batch_argnums is None else batch_argnums, "batch_argnums")
        self._check_argnums()
        self._cache: dict[Hashable, Entry] = {}
        # PipeshardParallel: time every part of each step (runtime/timeline.py), read by last_step_timeline.
        self.record_timeline = False
        # NNX module arguments come back for write-back (off for autopar.export: an Exported is pure).
        self.carry_modules = True
        self._last_executor: Any = None
        functools.update_wrapper(self, fn)

    # ---- jax.jit-like surface -------------------------------------------------------------------------

    @user_facing
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = self._arguments(args, kwargs)
        entry = self._cache.get(self._signature(args, kwargs))
        if entry is None or entry.executable is None:  # a first call: plan and compile (shown when slow)
            with self._progress() as progress:
                entry = self._entry(args, kwargs, progress)
                progress.stage("compiling with XLA")
                self._executable(entry)
        with deleted_arguments_named(self.fn, args, kwargs), jax.set_mesh(None):  # runs outside any user mesh
            return write_back(args, kwargs, self._run(entry, args, kwargs), entry.appended_modules)

    @user_facing
    def lower(self, *args: Any, **kwargs: Any) -> Lowered:
        """Plans for these arguments (arrays or jax.ShapeDtypeStruct) without running."""
        args, kwargs = self._arguments(args, kwargs)
        with self._progress() as progress:
            return Lowered(self, self._entry(args, kwargs, progress))

    def _progress(self) -> Progress:
        mesh = format_shape(self.mesh_shape)
        return Progress(f"{self.method.name} of {self.__name__} on mesh {mesh}")

    @user_facing
    def get_execution_plan(
        self, *args: Any, **kwargs: Any
    ) -> ExecutionPlan | pipeshard.PipeshardExecutionPlan:
        """The plan for these arguments (compiles, cached, to read the collectives XLA emitted).

        For PipeshardParallel: the stages (layers, submesh, device ids, logical mesh, estimated cost) read
        from the plan, without compiling."""
        args, kwargs = self._arguments(args, kwargs)
        entry = self._entry(args, kwargs)
        if self._pipeshard:
            plan = pipeshard.read_plan(entry.module, self.method, self.cluster)
        else:
            manual = getattr(self.method, "manual_sharding_option", None) is not None
            pipeline = "" if manual else self.method.pipeline(self.mesh_shape, self.axis_names)
            plan = execution_plan(self.method.name, entry, self._executable(entry), pipeline)
        remarks = self._remarks + entry.remarks
        return dataclasses.replace(plan, remarks=remarks + plan.remarks) if remarks else plan

    def last_step_timeline(self) -> Any:
        """The last pipelined step's `runtime.timeline.Timeline` (when each part ran on each mesh), if it
        ran with `f.record_timeline = True`; else None."""
        return getattr(self._last_executor, "last_timeline", None)

    def cache_size(self) -> int:
        """Number of input signatures planned so far."""
        return len(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()

    # ---- signature, lowering, planning ----------------------------------------------------------------

    def _arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Keyword arguments of positional parameters moved to their positions; static keyword-only ones
        wrapped (static_keywords.py)."""
        args, kwargs = keywords_to_positions(self.fn, args, kwargs)
        return args, static_keywords.mark(
            kwargs, self._static_keywords, self._static_keywords_auto, self.__name__
        )

    def _check_argnums(self) -> None:
        self.batch_argnums = self._batch_given
        if not self._batch_explicit:  # the default (1,) simply does not apply to a static argument
            self.batch_argnums = tuple(i for i in self.batch_argnums if i not in self.static_argnums)
        for name, nums in (("donate_argnums", self.donate_argnums), ("batch_argnums", self.batch_argnums)):
            if overlap := set(nums) & set(self.static_argnums):
                raise ValueError(
                    f"{name} {sorted(overlap)} are also static_argnums: an argument is one or other"
                )

    def _split(self, args: tuple[Any, ...]) -> tuple[list[int], tuple[Any, ...]]:
        if self._static_auto or self._donate_auto:  # Alpa's "auto", chosen once from the first call
            static = self.static_argnums
            if self._static_auto:  # Alpa's rule, beside the positions static_argnames named
                static = tuple(sorted({*auto_static_argnums(args), *static}))
            donate = auto_donate_argnums(args, static) if self._donate_auto else self.donate_argnums
            self.static_argnums, self.donate_argnums = static, donate
            self._static_auto = self._donate_auto = False
            self._check_argnums()
        for i in self.static_argnums:
            if i >= len(args):
                raise ValueError(
                    f"static_argnums names argument {i} but {self.__name__} was called with {len(args)} "
                    "positional arguments"
                )
        dynamic = [i for i in range(len(args)) if i not in self.static_argnums]
        statics = tuple(args[i] for i in self.static_argnums)
        return dynamic, statics

    def _signature(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        dynamic, statics = self._split(args)
        treedef = jax.tree.structure((tuple(args[i] for i in dynamic), kwargs))
        for i, value in zip(self.static_argnums, statics, strict=True):
            try:
                hash(value)
            except TypeError:
                raise TypeError(
                    f"static argument {i} of {self.__name__} has unhashable type {type(value).__name__}: "
                    "static arguments key the cache, pass a hashable value"
                ) from None
        return treedef, leaf_keys(self.fn, args, dynamic, kwargs), statics

    def _entry(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], progress: Progress | None = None
    ) -> Entry:
        key = self._signature(args, kwargs)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._plan(args, kwargs, progress)
            self._cache[key] = entry
        return entry

    def _plan(self, args: tuple[Any, ...], kwargs: dict[str, Any], progress: Progress | None = None) -> Entry:
        if progress is not None:
            progress.stage("tracing and lowering")
        if self._batch_explicit and (past := [i for i in self.batch_argnums if i >= len(args)]):
            check_call_fits(self.fn, self.__name__, args, kwargs)
            raise ValueError(
                f"batch_argnums names argument {past[0]} but {self.__name__} was called with {len(args)} "
                "positional arguments: pass the batch there, or give batch_argnums its position"
            )
        # NNX modules: their in-place updates come back (nnx_modules.py).
        carrying = self.carry_modules and has_modules(self.fn, args, kwargs)
        traced = CarryingModules(self.fn) if carrying else self.fn
        traced = (
            static_keywords.unwrapping(traced)
            if self._static_keywords or self._static_keywords_auto
            else traced
        )
        jitted = jax.jit(
            traced, static_argnums=self.static_argnums, donate_argnums=self.donate_argnums, keep_unused=True
        )
        # Planned from shapes and dtypes only: an argument's current placement (a sharded jax.Array, a
        # restored checkpoint) must not leak its mesh into the module, and every placement shares the plan.
        abstract_args = self._abstract(args)
        abstract_kwargs = jax.tree.map(abstract, kwargs)
        started = time.perf_counter()
        if self._pipeshard:  # autopar-inter-op plans the step of one micro-batch (as Alpa traces it)
            lowered = self._lower_micro_batch(jitted, abstract_args, abstract_kwargs)
        else:
            lowered = jitted.lower(*abstract_args, **abstract_kwargs)
        if not self._batch_explicit:
            check_default_batch(self.fn, abstract_args, lowered.out_info, self.batch_argnums)
        module = module_from_lowered(lowered)
        appended, names = getattr(traced, "appended", ()), getattr(traced, "appended_names", ())
        remarks = drop_user_shardings(module, self.__name__)
        dynamic, _ = self._split(args)
        flat_avals = [a._aval for a in jax.tree.leaves(lowered.args_info)]
        roles, paths = self._roles_and_paths(args, kwargs, dynamic, flat_avals)
        if self._pipeshard and (B := self.method.num_micro_batches) > 1 and "batch" not in roles:
            raise ArgumentError(
                f"PipeshardParallel(num_micro_batches={B}) splits a batch, but no argument of "
                f"{self.__name__} is one (batch_argnums={self.batch_argnums}): give batch_argnums the "
                "positions of the batch arguments (dim 0 is the batch), or use num_micro_batches=1"
            )
        main = sh.main_func(module)
        if len(main.type.inputs) != len(roles) or len(main.type.results) != lowered.out_tree.num_leaves:
            raise AutoparError(impure_step_message(self.__name__, lowered, main, len(roles)))
        mark_roles(module, roles, paths, output_names(lowered.out_tree, names))
        statistics = None
        if self._pipeshard and (B := self.method.num_micro_batches) > 1:
            # How each value combines over micro-batches, from the same step at twice the micro-batch.
            twice = module_from_lowered(
                jitted.lower(*self._micro_batch_args(abstract_args, scale=2), **abstract_kwargs)
            )
            drop_user_shardings(twice, self.__name__)  # the two lowerings pair op by op
            size = batch_size(abstract_args, self.batch_argnums) or 0
            whole = lambda: self._lowered_whole(jitted, abstract_args, abstract_kwargs)  # noqa: E731
            statistics = pipeshard.label_micro_batches(module, twice, size // B, B, whole)
            added = attrs.get_argument_marks(main)[len(roles) :]  # example indices and batch statistics
            roles = (*roles, *["batch" if a.is_batch else "statistic" for a in added])
            paths = (*paths, *[a.path for a in added])
        lowered_at = time.perf_counter()
        if progress is not None:
            progress.stage("planning")
        out_keys = tuple(key_impl(leaf) for leaf in jax.tree.leaves(lowered.out_info))
        callbacks = host_callbacks(lowered)
        if self._pipeshard:
            self._run_pipeline(module, self.method.pipeline(self.cluster))
        elif self.method.manual_sharding_option is not None:
            annotate_manual(
                module, self.method, self.axis_names, self.mesh_shape, (args, kwargs, dynamic), lowered
            )
        else:
            self._run_pipeline(module, self.method.pipeline(self.mesh_shape, self.axis_names))
        if not self._pipeshard:
            self._check_planned_mesh(module)
        timings = {"lower": lowered_at - started, "plan": time.perf_counter() - lowered_at}
        signature = (lowered.in_tree, lowered.out_tree, roles, paths, module, out_keys)
        extra = dict(remarks=remarks, appended_modules=appended, appended_names=names, statistics=statistics)
        return Entry(*signature, callbacks, timings, **extra)

    def _lower_micro_batch(self, jitted: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The step lowered for one micro-batch; micro_batch_failure says why a step cannot take one."""
        try:  # its own errors name the batch that does not divide
            micro_batch = self._micro_batch_args(args)
        except ArgumentError as err:
            if not self._batch_explicit:  # Alpa's default (1,) on state: say so, not that it does not divide
                try:
                    whole = jax.eval_shape(jitted, *args, **kwargs)
                except (TypeError, ValueError):  # failing on the whole batch too: the batch's own error
                    raise err from None
                check_default_batch(self.fn, args, whole, self.batch_argnums)
            raise
        try:
            return jitted.lower(*micro_batch, **kwargs)
        except (TypeError, ValueError) as err:
            whole = jax.eval_shape(jitted, *args, **kwargs)  # failing on the whole batch too: its own error
            n, explicit = self.method.num_micro_batches, self._batch_explicit
            raise micro_batch_failure(self.fn, args, whole, self.batch_argnums, explicit, n, err) from None

    def _micro_batch_args(self, args: tuple[Any, ...], scale: int = 1) -> list[Any]:
        n = self.method.num_micro_batches
        return micro_batch_args(positional_names(self.fn, len(args)), args, self.batch_argnums, n, scale)

    def _lowered_whole(self, jitted: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ir.Module:
        """The step lowered at the whole batch, paired op by op with its micro-batch lowerings."""
        module = module_from_lowered(jitted.lower(*args, **kwargs))
        drop_user_shardings(module, self.__name__)
        return module

    def _abstract(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a if i in self.static_argnums else jax.tree.map(abstract, a) for i, a in enumerate(args))

    def _run_pipeline(self, module: ir.Module, pipeline: str) -> None:
        """Runs the method's pipeline; a pass's refusal becomes an error in the API's own terms (its option
        names, the method), raised from the user's call without the passes' traceback."""
        try:
            passes.run(module, pipeline)
        except (PassError, PipelineError) as err:
            raise type(err)(in_api_terms(str(err), self.method)) from None

    def _roles_and_paths(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], dynamic: list[int], avals: list[Any]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        names = positional_names(self.fn, len(args))
        size = batch_size(args, self.batch_argnums)
        roles, paths = [], []
        leaves_with_paths = jax.tree_util.tree_flatten_with_path((tuple(args[i] for i in dynamic), kwargs))[0]
        for (path, leaf), aval in zip(leaves_with_paths, avals, strict=True):
            if path[0].idx == 0:  # a positional argument
                position = dynamic[path[1].idx]
                head, rest = names[position], path[2:]
                is_batch = position in self.batch_argnums and aval.shape != () and is_batch_leaf(leaf, size)
            else:  # a keyword argument
                head, rest, is_batch = str(path[1].key), path[2:], False
            roles.append("batch" if is_batch else "parameter")
            paths.append(head + jax.tree_util.keystr(tuple(rest)))
        return tuple(roles), tuple(paths)

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

    def _executable(self, entry: Entry) -> rt_exe.ShardedExecutable | SequentialExecutor:
        if entry.executable is None:
            started = time.perf_counter()
            if self._pipeshard:
                names = [root + path for root, path in output_paths(entry.out_tree, entry.appended_names)]
                declared = dict(self.method.output_combine)
                for path in declared:
                    if path not in names:
                        raise ValueError(
                            f"output_combine names output {path!r}, which {self.__name__} does not return; "
                            f"its outputs are {names}"
                        )
                options = dict(
                    output_combine={i: declared[p] for i, p in enumerate(names) if p in declared},
                    approximate_combine=self.method.approximate_combine,
                    output_names=names,
                )
                if self._use_processes(entry.module, bool(entry.host_callbacks)):
                    hosts, per_host = self.method.cluster_for(len(self.devices))
                    entry.executable = ProcessExecutor(
                        entry.module, self.devices, devices_per_host=per_host, **options
                    )
                else:
                    entry.executable = SequentialExecutor(
                        entry.module, self.devices, host_callbacks=entry.host_callbacks, **options
                    )
            else:
                entry.executable = rt_exe.compile(entry.module, self.devices, entry.host_callbacks)
            entry.timings["compile"] = time.perf_counter() - started
        return entry.executable

    def _use_processes(self, module: ir.Module, callbacks: bool) -> bool:
        """PipeshardParallel(executor=...): "auto" runs a process per mesh on CPU devices when there are
        several meshes and cores (runtime/processes.py has the measurement), but in this process when the
        step calls back into Python (jax.debug.print): its callbacks are this process's functions."""
        choice, ray = self.method.executor, cluster.current().kind != "local"  # ray: the hosts run meshes
        if callbacks and (ray or choice == "processes"):
            raise AutoparError(
                f"{self.__name__} calls back into Python, which only this process can do: remove its "
                f"callbacks (jax.debug.print, ...) or use executor='in-process'{' locally' if ray else ''}"
            )
        if ray and choice == "in-process":
            raise ValueError("executor='in-process' runs on this machine, not on the Ray cluster chosen")
        if ray or choice != "auto" or callbacks:
            return ray or choice == "processes"
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return self.devices[0].platform == "cpu" and cores > 1 and len(stage_meshes(module)) > 1

    def _run(self, entry: Entry, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        exe = self._executable(entry)
        dynamic, _ = self._split(args)
        # Typed PRNG keys travel as their key data, as @main declares them (tensor<2xui32> per key).
        flat = [key_data(x) for x in jax.tree.leaves((tuple(args[i] for i in dynamic), kwargs))]
        if self._pipeshard:
            exe.record_timeline, self._last_executor = self.record_timeline, exe
            flat = entry.statistics(flat) if entry.statistics else flat  # the batch's statistics it reads
        outputs = exe(*flat) if self._pipeshard else exe(flat)
        if self._pipeshard:  # jax.jit's executables consume donated buffers; the stages copy them
            delete_donated([args[i] for i in self.donate_argnums if i < len(args)], outputs)
        outputs = [
            x if impl is None else jax.random.wrap_key_data(jnp.asarray(x), impl=impl)
            for x, impl in zip(outputs, entry.out_keys, strict=True)
        ]
        return jax.tree.unflatten(entry.out_tree, outputs)

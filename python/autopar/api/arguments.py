"""What `parallelize` reads from a call's arguments: argnums, the abstract values a plan is made from and
keyed by, pytree paths and positional names, typed PRNG keys, manual PartitionSpec prefixes, and the marks
it writes on @main's arguments."""

from __future__ import annotations

import collections
import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import PartitionSpec
from jaxlib.mlir import ir

from autopar.errors import ArgumentError, AutoparError
from autopar.ir import attrs
from autopar.runtime import shardings as sh
from autopar.runtime.remote_array import RemoteArray


def check_function_and_devices(fn: Any, devices: Any) -> tuple[jax.Device, ...] | None:
    """parallelize's `devices` as a tuple (None: all local devices), after checking them and `fn` (a
    callable): a TypeError says what is wrong. A tuple, so that a generator is read once."""
    if not callable(fn):
        raise TypeError(f"parallelize expects a function, got {type(fn).__name__}")
    if devices is None:
        return None
    given = None
    if not isinstance(devices, str):
        try:
            given = tuple(devices)
        except TypeError:  # not iterable: one device, a count
            pass
    if given is None or not all(isinstance(d, jax.Device) for d in given):
        raise TypeError(f"devices must be jax devices (e.g. jax.devices()[:4]), got {devices!r}")
    return given


def argnums(value: int | Sequence[int], name: str) -> tuple[int, ...]:
    nums = (value,) if isinstance(value, int) else tuple(value)
    for n in nums:
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be non-negative ints, got {value!r}")
    return tuple(sorted(set(nums)))


def argnums_or_auto(value: int | Sequence[int] | str, name: str) -> tuple[int, ...] | None:
    """The indices, or None for "auto" (Alpa's: chosen from the first call's arguments)."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f'{name} must be non-negative ints or "auto", got {value!r}')
        return None
    return argnums(value, name)


def auto_static_argnums(args: Sequence[Any]) -> tuple[int, ...]:
    """Alpa's rule for static_argnums="auto": a Python bool, int, float or str, or a pytree with a leaf
    that is not an array (a callable, a config object)."""
    return tuple(i for i, a in enumerate(args) if is_static_by_default(a))


def auto_donate_argnums(args: Sequence[Any], static: Sequence[int]) -> tuple[int, ...]:
    """Alpa's rule for donate_argnums="auto": flax TrainStates (and subclasses), which a step replaces."""
    return tuple(i for i, a in enumerate(args) if i not in static and _is_train_state(a))


def is_static_by_default(arg: Any) -> bool:
    if isinstance(arg, (bool, int, float, str)):
        return True
    try:
        jax.tree.map(abstract, arg)
    except TypeError:
        return True
    return False


def _is_train_state(arg: Any) -> bool:
    return any(
        c.__name__ == "TrainState" and c.__module__ == "flax.training.train_state" for c in type(arg).__mro__
    )


def abstract(x: Any) -> jax.ShapeDtypeStruct:
    """Shape, dtype and weak type of an argument leaf, without its sharding."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, weak_type=bool(getattr(x, "weak_type", False)))
    if isinstance(x, jax.Ref):  # typeof gives its AbstractRef, which no plan output can be made of
        raise TypeError("a mutable array ref is not an array")
    try:
        aval = jax.typeof(x)
    except TypeError:
        raise TypeError(
            f"argument leaf of type {type(x).__name__} is not an array: pass arrays, scalars or "
            "jax.ShapeDtypeStruct, or make the argument static (static_argnums)"
        ) from None
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


def host_callbacks(lowered: Any) -> tuple[Any, ...]:
    """The Python callbacks JAX registered while lowering (`jax.debug.print` lowers to a custom call that
    names its callback by index). jax keeps them with its private lowering object; jax is pinned, and the
    tests run a step with `jax.debug.print`."""
    lowering = getattr(lowered, "_lowering", None)
    compile_args = getattr(lowering, "compile_args", None) or {}
    return tuple(compile_args.get("host_callbacks", ()))


def impure_step_message(name: str, lowered: Any, main: Any, inputs: int) -> str:
    """Why a step's @main has other arguments or results than its pytrees: ordered effects thread a token
    through it (named, with what to do), or something else this version of JAX adds."""
    lowering = getattr(lowered, "_lowering", None)
    if (getattr(lowering, "compile_args", None) or {}).get("ordered_effects"):
        return (
            f"{name} has ordered side effects (jax.debug.print(..., ordered=True), io_callback(..., "
            "ordered=True)), which thread a token through the program: drop ordered=True; autopar runs "
            "unordered callbacks"
        )
    return (
        f"{name} lowered to a @main with {len(main.type.inputs)} arguments and {len(main.type.results)} "
        f"results for {inputs} inputs and {lowered.out_tree.num_leaves} outputs (side effects or tokens?): "
        "only pure functions can be parallelized"
    )


def is_key_dtype(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def key_data(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    return jax.random.key_data(x) if dtype is not None and is_key_dtype(dtype) else x


def key_impl(leaf: Any) -> Any:
    """The PRNG implementation of a typed-key output (to wrap its data back), else None."""
    return leaf.dtype._impl if is_key_dtype(leaf.dtype) else None


def aval_key(x: Any) -> tuple[Any, ...]:
    """What of an argument leaf keys the plan cache: exactly what the plan is made from."""
    value = abstract(x)
    return tuple(value.shape), value.dtype, bool(value.weak_type)


def leaf_keys(
    fn: Callable[..., Any], args: tuple[Any, ...], dynamic: Sequence[int], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], ...]:
    """`aval_key` of every dynamic argument leaf, in `jax.tree.flatten`'s order of `(dynamic args, kwargs)`.
    A leaf that is not an array is refused by its path (`model.layers[0].activation`): a module that keeps
    functions among its weights (Equinox's) is the usual cause, and the path says where. Paths are only
    spelled out then: this runs on every call."""
    tree = (tuple(args[i] for i in dynamic), kwargs)
    keys = []
    for k, leaf in enumerate(jax.tree.leaves(tree)):
        if not isinstance(leaf, jax.core.Tracer):
            try:
                keys.append(aval_key(leaf))
                continue
            except TypeError:
                pass
        raise _refused_leaf(fn, args, dynamic, tree, k, leaf)
    return tuple(keys)


def _refused_leaf(
    fn: Callable[..., Any], args: tuple[Any, ...], dynamic: Sequence[int], tree: Any, k: int, leaf: Any
) -> TypeError:
    path = jax.tree_util.tree_flatten_with_path(tree)[0][k][0]
    head = positional_names(fn, len(args))[dynamic[path[1].idx]] if path[0].idx == 0 else str(path[1].key)
    name = head + jax.tree_util.keystr(tuple(path[2:]))
    if isinstance(leaf, jax.core.Tracer):
        return TypeError(
            f"{name} is a tracer: {getattr(fn, '__name__', 'the function')} was called inside jax.jit, "
            "jax.grad, jax.vmap or another transformation, but it runs a plan compiled for concrete "
            "arrays; call it outside them, or parallelize the function that calls it"
        )
    if isinstance(leaf, jax.Ref):
        return TypeError(
            f"{name} is a mutable array ref (jax.new_ref, or a flax NNX Variable made with ref=True), which "
            "a plan cannot take: pass its value (ref[...]) and return the new one, or make the Variable "
            "without ref=True (parallelize writes a Variable the step assigns back, as nnx.jit does)"
        )
    return TypeError(
        f"{name} (a {type(leaf).__name__}) is not an array: pass arrays, scalars or "
        f"jax.ShapeDtypeStruct; make {head} static (static_{'argnums' if path[0].idx == 0 else 'argnames'}) "
        "if it holds no arrays, or pass its arrays apart from the rest (e.g. eqx.partition, or a closure)"
    )


def keywords_to_positions(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """`f(params, batch=x)` as `f(params, x)`: keyword arguments that fill the next positional parameters
    move into place, so batch_argnums, static_argnums and donate_argnums (positions, as in jax.jit) apply
    to them and a call means the same plan either way. The function sees the same arguments."""
    if not kwargs:
        return args, kwargs
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return args, kwargs
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    args, kwargs = list(args), dict(kwargs)
    while len(args) < len(positional) and positional[len(args)] in kwargs:
        args.append(kwargs.pop(positional[len(args)]))
    return tuple(args), kwargs


def check_call_fits(fn: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A call whose argnums point past its arguments may simply lack one: then that is the error, in
    Python's words. Only asked after an argnums check failed, so a decorator whose __wrapped__ signature
    differs from what it accepts is never refused here."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:  # a signature inspect cannot read raises ValueError: nothing to say then
        raise TypeError(f"{name} cannot be called with these arguments: {e}") from None
    except ValueError:
        pass


def positional_names(fn: Callable[..., Any], n: int) -> list[str]:
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


def broadcast_specs(prefix: Any, tree: Any, what: str) -> list[PartitionSpec | None]:
    try:
        full = jax.tree.broadcast(prefix, tree, is_leaf=_is_spec_leaf)
    except ValueError as err:
        where = _prefix_mismatch(prefix, tree, what) or str(err).splitlines()[0]
        raise ValueError(f"{what} is not a pytree prefix of what it describes: {where}") from None
    return jax.tree.leaves(full, is_leaf=_is_spec_leaf)


def _prefix_mismatch(prefix: Any, tree: Any, path: str, side: str = "") -> str | None:
    """Where `prefix` stops being a prefix of `tree`, in one line (`in_axis_resources[0] has 1 entries
    where the arguments have 2`), or None; JAX's message spans several lines and names its own variables."""
    side = side or ("the outputs" if path.startswith("out_") else "the arguments")
    if _is_spec_leaf(prefix):
        return None
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(tree)):
        return f"{path} is a {type(prefix).__name__} where {side} have an array"
    if type(prefix) is not type(tree):
        return f"{path} is a {type(prefix).__name__} where {side} have a {type(tree).__name__}"
    one_level = lambda x: jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)[0]  # noqa: E731
    mine, theirs = one_level(prefix), one_level(tree)
    keys = [jax.tree_util.keystr(k) for k, _ in mine]
    other = [jax.tree_util.keystr(k) for k, _ in theirs]
    if keys != other:
        if isinstance(prefix, (list, tuple)):
            return f"{path} has {len(keys)} entries where {side} have {len(other)}"
        if isinstance(prefix, dict):
            return f"{path} has keys {sorted(prefix, key=str)} where {side} have {sorted(tree, key=str)}"
        return f"{path} has {' '.join(keys)} where {side} have {' '.join(other)}"
    for (k, a), (_, b) in zip(mine, theirs, strict=True):
        found = _prefix_mismatch(a, b, path + jax.tree_util.keystr(k), side)
        if found:
            return found
    return None


def mark_roles(
    module: ir.Module, roles: Sequence[str], paths: Sequence[str] = (), output_names: Sequence[str] = ()
) -> None:
    """Marks every @main argument as batch or parameter and, when given, names it by its pytree path
    (`autopar.path`, which the passes' messages use), and each result by the name plans give it (which
    `--plan-report` shows)."""
    main = sh.main_func(module)
    if output_names:
        attrs.set_result_paths(main, output_names)
    marks = []
    for i in range(len(main.type.inputs)):
        batch = i < len(roles) and roles[i] == "batch"
        marks.append(attrs.ArgumentMarks(batch, not batch, paths[i] if i < len(paths) else None))
    attrs.set_argument_marks(main, marks)


def batch_size(args: tuple[Any, ...], batch_argnums: tuple[int, ...]) -> int | None:
    """The examples in a call's batch: the leading size most leaves of the batch arguments share (PRNG
    keys and scalars left out; a tie goes to the larger size)."""
    sizes = collections.Counter(
        int(leaf.shape[0])
        for i in batch_argnums
        if i < len(args)
        for leaf in jax.tree.leaves(args[i])
        if _shape(leaf) and not is_key_leaf(leaf)
    )
    return max(sizes, key=lambda n: (sizes[n], n)) if sizes else None


def is_batch_leaf(leaf: Any, size: int | None) -> bool:
    """Whether a leaf of a batch argument is split into micro-batches: it has the batch's leading size
    and is not a PRNG key (a key, a step counter or a table of another size is passed whole)."""
    shape = _shape(leaf)
    return bool(shape) and size is not None and shape[0] == size and not is_key_leaf(leaf)


def _shape(leaf: Any) -> tuple[int, ...]:
    return tuple(getattr(leaf, "shape", np.shape(leaf)))


def is_key_leaf(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and is_key_dtype(dtype)


def micro_batch_args(
    names: list[str], args: tuple[Any, ...], batch_argnums: tuple[int, ...], n: int, scale: int = 1
) -> list[Any]:
    """`args` with every batch leaf abstract at `scale`/n of its dim 0 (is_batch_leaf: PRNG keys and
    leaves of another leading size stay whole); an ArgumentError names a batch leaf n does not divide."""
    size = batch_size(args, batch_argnums)
    out = list(args)
    for i in batch_argnums:
        if i >= len(args):
            continue

        def split(path: Any, x: Any, i: int = i) -> Any:
            if not is_batch_leaf(x, size):
                return x
            shape, dtype = np.shape(x), x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
            if shape[0] % n:
                raise ArgumentError(
                    f"{names[i]}{jax.tree_util.keystr(path)} has batch dim {shape[0]}, which {n} "
                    f"micro-batches do not divide: use a batch size divisible by num_micro_batches={n}"
                )
            return jax.ShapeDtypeStruct((shape[0] // n * scale, *shape[1:]), dtype)

        out[i] = jax.tree_util.tree_map_with_path(split, args[i])
    return out


def check_default_batch(
    fn: Callable[..., Any], args: tuple[Any, ...], out_info: Any, batch: tuple[int, ...]
) -> None:
    """Refuses Alpa's default batch_argnums (1,) where the step returns a new value of that argument.

    The default assumes `step(state, batch)`. A step written `step(batch, params)` or `step(params,
    opt_state, batch)` returns its argument 1 updated (new parameters, optimizer state, an NNX module written
    back): planned as a batch, its weights would be split along dim 0 as data (DataParallel) and the real
    batch left whole, with right numbers and no word. An argument whose leaves all share one leading size
    (as a batch's) is not refused. An explicit batch_argnums is never second-guessed.
    """
    names = positional_names(fn, len(args))
    for i in batch:
        if i < len(args) and not _batch_like(args[i]) and _returned_updated(args[i], out_info):
            hint = [
                j
                for j in range(len(args))
                if j != i and _has_arrays(args[j]) and not _returned_updated(args[j], out_info)
            ]
            # A lone array the step returns as it came (one weight matrix, updated) is state too, unless
            # that leaves nothing to name: a batch may also come back whole (an autoencoder's input).
            hint = [j for j in hint if not _returned_whole(args[j], out_info)] or hint
            example = f"e.g. batch_argnums={tuple(hint)} ({', '.join(names[j] for j in hint)})"
            raise ArgumentError(
                f"batch_argnums defaults to (1,) (Alpa's step(state, batch)), but {names[i]} at position {i} "
                "is state the step returns updated, not a batch; give the batch's positions, "
                + (example if hint else "or batch_argnums=() for a step that takes no batch")
            )


def _returned_updated(arg: Any, out_info: Any) -> bool:
    """Whether the step's output, or one of its top-level elements, has this argument's pytree structure
    and leaves (dim 0 aside: a pipelined step is lowered for one micro-batch). One leaf alone is not
    enough: a reconstruction has its input's shape."""
    leaves, tree = jax.tree.flatten(arg)
    if len(leaves) < 2:
        return False
    parts = _output_parts(out_info)
    return any(jax.tree.structure(p) == tree and _types(jax.tree.leaves(p)) == _types(leaves) for p in parts)


def _returned_whole(arg: Any, out_info: Any) -> bool:
    """Whether `arg` is one array and the step's output, or one of its top-level elements, is one array of
    its shape and dtype (dim 0 included)."""
    leaves = jax.tree.leaves(arg)
    return len(leaves) == 1 and any(
        [_full_type(x) for x in jax.tree.leaves(p)] == [_full_type(leaves[0])]
        for p in _output_parts(out_info)
    )


def _output_parts(out_info: Any) -> list[Any]:
    """The step's output and, when it is a tuple, list or dict, each of its top-level elements."""
    if not isinstance(out_info, (tuple, list, dict)):
        return [out_info]
    return [out_info, *(out_info.values() if isinstance(out_info, dict) else out_info)]


def _full_type(leaf: Any) -> tuple[tuple[int, ...], str]:
    return _shape(leaf), str(getattr(leaf, "dtype", ""))


def _types(leaves: list[Any]) -> list[tuple[tuple[int, ...], str]]:
    """Each leaf's shape below dim 0 and its dtype."""
    return [(_shape(x)[1:], str(getattr(x, "dtype", ""))) for x in leaves]


def _batch_like(arg: Any) -> bool:
    """Every leaf has a dim 0 and all share its size, as a batch's do: such an argument is left as the
    batch even when the step returns something of its shape (an eval step's predictions of its inputs)."""
    shapes = [_shape(x) for x in jax.tree.leaves(arg)]
    return all(shapes) and len({shape[0] for shape in shapes}) == 1


def _has_arrays(arg: Any) -> bool:
    return any(_shape(x) for x in jax.tree.leaves(arg))


def micro_batch_failure(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    out_info: Any,
    batch: tuple[int, ...],
    explicit: bool,
    micro_batches: int,
    err: Exception,
) -> Exception:
    """The error for a step that runs on its whole batch (`out_info`) but not on one micro-batch of it
    (`err`, JAX's): the parameters passed where a default batch_argnums points, split like a batch, are
    refused first as check_default_batch refuses them unpipelined; a part of the batch (the labels beside
    the inputs) left out of batch_argnums stays whole while the rest is split, and the error names it. A
    weight the step returns is never offered as batch."""
    if not explicit:
        check_default_batch(fn, args, out_info, batch)
    names = positional_names(fn, len(args))
    given = ", ".join(names[i] for i in batch if i < len(names))
    size = batch_size(args, batch)
    left_out = [
        j
        for j in range(len(args))
        if j not in batch
        and _batch_like(args[j])
        and _shape(jax.tree.leaves(args[j])[0])[0] == size
        and not _returned_updated(args[j], out_info)
        and not _returned_whole(args[j], out_info)
    ]
    if left_out:
        also = ", ".join(f"{names[j]} at position {j}" for j in left_out)
        hint = (
            f"{also} also {'leads' if len(left_out) == 1 else 'lead'} with the batch's size {size}: if part "
            f"of the batch, give batch_argnums={tuple(sorted({*batch, *left_out}))}"
        )
    else:
        hint = f"if {given} is not the batch, give batch_argnums"
    return ArgumentError(
        f"{getattr(fn, '__name__', 'the step')} fails on one micro-batch of its batch arguments ({given}: "
        f"batch_argnums={batch}, each leaf's dim 0 divided by {micro_batches}): "
        f"{str(err).splitlines()[0].rstrip('.')}; {hint}"
    )


@contextlib.contextmanager
def deleted_arguments_named(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[None]:
    """Runs a call; when it fails on a deleted argument array (jax's "Array has been deleted with
    shape=float32[16,8]"), says which argument by its path and the usual cause, a donation."""
    try:
        yield
    except (RuntimeError, AutoparError) as err:  # jax.Array's, or a pipeline worker's RemoteArray's
        if "has been deleted" not in str(err) and "was deleted" not in str(err):
            raise
        names = positional_names(fn, len(args))
        for path, leaf in jax.tree_util.tree_flatten_with_path((args, kwargs))[0]:
            if isinstance(leaf, (jax.Array, RemoteArray)) and leaf.is_deleted():
                head = names[path[1].idx] if path[0].idx == 0 else str(path[1].key)
                name = head + jax.tree_util.keystr(tuple(path[2:]))
                raise ArgumentError(
                    f"{name} was deleted: an array donated to an earlier call (donate_argnums) is gone, as "
                    "are those a pipeline's workers held once they stopped (autopar.shutdown(), a fault); "
                    "pass what that call returned in its place, or a restored checkpoint"
                ) from None
        raise


def delete_donated(donated: list[Any], outputs: Sequence[Any]) -> None:
    """Deletes the donated arrays, as jax.jit does (an output that is the very same array survives)."""
    kept = {id(x) for x in outputs}
    for leaf in jax.tree.leaves(donated):
        if isinstance(leaf, (jax.Array, RemoteArray)) and id(leaf) not in kept and not leaf.is_deleted():
            leaf.delete()

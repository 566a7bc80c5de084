"""A planned module's plan, read back from its IR: per-stage tensor layouts of a pipeshard plan
(`PipeshardExecutionPlan.tensors`, which `.explain(path)` reads: api/pipeshard_explain.py) and
`autopar-opt --plan-report=FILE`.

Everything here is read from the module the passes wrote: @main's argument and result shardings, the plan
attributes of autopar-intra-op (`autopar.objective`, `autopar.expected_collectives`, ...) and, for a
pipeshard plan, autopar-inter-op's stages and each stage function's argument shardings on its mesh.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from jaxlib.mlir import ir

from autopar.errors import AutoparError
from autopar.ir import attrs

if TYPE_CHECKING:
    pass

PLANNING_PASSES = ("autopar-intra-op", "autopar-shard", "autopar-pipeshard", "autopar-inter-op")


@dataclasses.dataclass(frozen=True)
class StageTensor:
    """A @main argument as one stage reads it: its path, the stage function part (forward, backward,
    apply) that first reads it, and its layout on the stage's logical mesh (`mesh`, e.g. `[x=2, y=2]`)."""

    stage: int
    part: str
    path: str
    shape: tuple[int, ...]
    dtype: str
    spec: str
    mesh: str


def _spec_text(spec) -> str:
    from autopar.api.plan import _spec_text as text

    return text(spec)


def _bytes_text(n: int) -> str:
    from autopar.api.plan import _bytes_text as text

    return text(n)


def _mesh_text(mesh) -> str:
    return "[" + ", ".join(f"{n}={s}" for n, s in zip(mesh.axis_names, mesh.shape, strict=True)) + "]"


def _tensor_type(t: ir.Type) -> tuple[tuple[int, ...], str]:
    if isinstance(t, ir.RankedTensorType):
        return tuple(t.shape), _dtype(str(t.element_type))
    return (), str(t)


def _dtype(mlir: str) -> str:
    names = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64", "i1": "bool"}
    if mlir in names:
        return names[mlir]
    if mlir.startswith(("i", "ui")) and mlir.lstrip("ui").isdigit():
        return ("uint" if mlir.startswith("ui") else "int") + mlir.lstrip("ui")
    return mlir


def argument_names(main) -> list[str]:
    """@main's argument names: parallelize's `autopar.path`, else JAX's `jax.arg_info`, else `%argN`."""
    from autopar.runtime import shardings as sh

    out = []
    for i, d in enumerate(sh.arg_attrs(main)):
        name = f"%arg{i}"
        for key in (attrs.PATH, "jax.arg_info"):
            if key in d:
                name = ir.StringAttr(d[key]).value
                break
        out.append(name)
    return out


def result_names(main) -> list[str]:
    return [p if p is not None else f"result {j}" for j, p in enumerate(attrs.get_result_names(main))]


def stage_tensors(module: ir.Module) -> tuple[StageTensor, ...]:
    """Per stage, each @main argument its functions read, with the layout the stage reads it in: once per
    distinct layout (the first part that reads it so: forward, backward, apply), in stage order."""
    from autopar.ir.stages import stage_calls
    from autopar.runtime import shardings as sh

    meshes = sh.module_meshes(module)
    main = sh.main_func(module)
    index = {a: i for i, a in enumerate(main.regions[0].blocks[0].arguments)}
    names = argument_names(main)
    seen: set[tuple[int, int, str]] = set()
    out = []
    for op, fn in stage_calls(module):
        stage, part = attrs.get_stage(fn), attrs.get_part(fn) or ""
        arg_attrs = sh.arg_attrs(fn)
        for j, operand in enumerate(op.operands):
            i = index.get(operand)
            if i is None:
                continue
            shape, dtype = _tensor_type(operand.type)
            spec, mesh = "replicated", ""
            if "sdy.sharding" in arg_attrs[j]:
                fn_name = ir.StringAttr(fn.attributes["sym_name"]).value
                mesh_name, p = sh.sharding_to_spec(arg_attrs[j]["sdy.sharding"], len(shape), f"@{fn_name}")
                spec = _spec_text(p)
                mesh = _mesh_text(meshes[mesh_name]) if mesh_name in meshes else mesh_name
            if (stage, i, spec) not in seen:  # a layout change between the stage's parts shows
                seen.add((stage, i, spec))
                out.append(StageTensor(stage, part, names[i], shape, dtype, spec, mesh))
    return tuple(sorted(out, key=lambda t: t.stage))


def stage_remarks(module: ir.Module) -> tuple[str, ...]:
    """What each stage function's autopar-intra-op remarked (kept by autopar-shard-stages), each prefixed
    with its stage and part ("stage 0 forward: ..."), by stage then in call order; each once."""
    from autopar.ir.stages import stage_calls

    out: dict[tuple[int, str], str] = {}
    for _, fn in stage_calls(module):
        stage, part = attrs.get_stage(fn), attrs.get_part(fn) or ""
        for remark in attrs.get_remarks(fn):
            out.setdefault((stage, f"{part}: {remark}"), f"stage {stage} {part}: {remark}")
    return tuple(text for (stage, _), text in sorted(out.items(), key=lambda kv: kv[0][0]))


# ---- autopar-opt --plan-report ------------------------------------------------------------------------


def check_pipeline(names: list[str]) -> None:
    if not any(n in PLANNING_PASSES for n in names):
        raise AutoparError(
            "--plan-report: the pipeline ran no autopar planning pass (autopar-intra-op / autopar-pipeshard)"
        )


def _tensors(main, which: str, unsharded: str) -> list[dict]:
    from autopar.runtime import shardings as sh

    if which == "arg":
        types, names = list(main.type.inputs), argument_names(main)
        dicts = sh.arg_attrs(main)
    else:
        types, names = list(main.type.results), result_names(main)
        dicts = attrs.result_dicts(main)
    out = []
    for t, name, d in zip(types, names, dicts, strict=True):
        shape, dtype = _tensor_type(t)
        spec = unsharded
        if "sdy.sharding" in d:
            spec = _spec_text(sh.sharding_to_spec(d["sdy.sharding"], len(shape), name)[1])
        roles = [r for r, key in (("batch", attrs.BATCH), ("parameter", attrs.PARAMETER)) if key in d]
        entry = {"name": name, "shape": list(shape), "dtype": dtype, "layout": spec}
        if roles:
            entry["role"] = roles[0]
        out.append(entry)
    return out


def report(module: ir.Module) -> dict:
    """The plan of a planned module as plain data (what --plan-report writes as JSON)."""
    from autopar.runtime import shardings as sh

    module_op = module.operation
    main = sh.main_func(module)
    result = attrs.get_intra_op_result(module_op)
    inter_op = attrs.get_inter_op_plan(module_op)
    out: dict[str, Any] = {"kind": "pipeshard" if inter_op is not None else "intra-op"}
    if result is not None:
        out.update(
            mesh=list(result.mesh_shape),
            estimated_cost=result.objective,
            lower_bound=result.lower_bound,
            solver_status=result.solver_status,
            peak_memory=result.peak_memory,
            remarks=list(result.remarks),
        )
    # A pipeshard @main places nothing itself: its stages hold the layouts (`stages`, below).
    unsharded = "per stage" if inter_op is not None else "replicated"
    out["inputs"] = _tensors(main, "arg", unsharded)
    out["outputs"] = _tensors(main, "res", unsharded)
    expected = attrs.get_expected_collectives(module_op) or ()
    out["planned_collectives"] = [
        {"kind": e.kind, "axes": list(e.axes), "count": e.count, "bytes": e.bytes} for e in expected
    ]
    if inter_op is not None:
        tensors = stage_tensors(module)
        out["estimated_latency"] = inter_op.latency
        out["remarks"] = list(stage_remarks(module))
        out["micro_batches"] = inter_op.micro_batches
        out["stages"] = [
            {
                "index": k,
                "layers": list(s.layers),
                "submesh": list(s.mesh.shape),
                "logical_mesh": list(s.mesh.logical_shape or ()),
                "device_ids": list(s.mesh.device_ids),
                "estimated_cost": s.cost,
                "estimated_memory": s.memory,
                "tensors": [
                    {"name": t.path, "part": t.part, "layout": t.spec, "mesh": t.mesh}
                    for t in tensors
                    if t.stage == k
                ],
            }
            for k, s in enumerate(inter_op.stages)
        ]
    return out


def report_text(data: dict) -> str:
    lines = [f"plan: {data['kind']}"]
    if "mesh" in data:
        lines.append(f"mesh: {'x'.join(map(str, data['mesh']))}")
        lines.append(
            f"solver: {data['solver_status']}, estimated cost {data['estimated_cost']:.4g} s "
            f"(lower bound {data['lower_bound']:.4g} s), "
            f"peak memory {_bytes_text(data['peak_memory'])} per device"
        )
    if "estimated_latency" in data:
        lines.append(
            f"pipeline: {len(data['stages'])} stage(s), {data['micro_batches']} micro-batch(es), "
            f"estimated latency {data['estimated_latency']:.4g} s"
        )
    lines.extend(f"remark: {r}" for r in data.get("remarks", ()))
    for title in ("inputs", "outputs"):
        lines.append(f"{title}:")
        width = max((len(t["name"]) for t in data[title]), default=0)
        for t in data[title]:
            shape = f"{t['dtype']}[{','.join(map(str, t['shape']))}]"
            role = f"  ({t['role']})" if "role" in t else ""
            lines.append(f"  {t['name']:<{width}}  {shape:<18} {t['layout']}{role}")
    if data["planned_collectives"]:
        lines.append("planned collectives (count x bytes per device):")
    for c in data["planned_collectives"]:
        size = _bytes_text(c["bytes"])
        lines.append(f"  {c['kind']:<18} {c['count']:>5} x {size:>10} over {','.join(c['axes'])}")
    for s in data.get("stages", ()):
        lines.append(
            f"stage {s['index']}: layers [{s['layers'][0]}, {s['layers'][1]}) on submesh "
            f"{'x'.join(map(str, s['submesh']))} devices {s['device_ids']}, logical mesh "
            f"{'x'.join(map(str, s['logical_mesh']))}, {s['estimated_cost']:.4g} s/micro-batch"
        )
        for t in s["tensors"]:
            lines.append(f"  {t['name']} ({t['part']}): {t['layout']} on {t['mesh'] or 'its mesh'}")
    return "\n".join(lines) + "\n"


def write_report(path: str, modules: list[ir.Module | str], split: bool = False) -> None:
    """Writes the report of `modules` atomically: JSON when `path` ends in .json. With `split`
    (--split-input-file) there is one per input chunk, in order (a str: the error that chunk failed with):
    a JSON list of reports each with its `chunk` number, or text sections headed `// ----- chunk k`."""
    from pathlib import Path

    from autopar import ir as air

    data = []
    for k, m in enumerate(modules):
        if isinstance(m, str):
            data.append({"chunk": k, "error": m})
            continue
        with m.context:
            data.append(({"chunk": k} if split else {}) | report(m))
    if path.endswith(".json"):
        text = json.dumps(data if split else data[0], indent=2) + "\n"
    elif split:
        text = "\n".join(
            f"// ----- chunk {d['chunk']}\n" + (f"error: {d['error']}\n" if "error" in d else report_text(d))
            for d in data
        )
    else:
        text = report_text(data[0])
    try:
        air.write_atomically(Path(path), text.encode())
    except OSError as err:
        raise AutoparError(f"--plan-report: cannot write {path} ({err.strerror})") from None

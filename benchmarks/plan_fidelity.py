"""Plan fidelity: does XLA compile the communication the intra-op plan priced?

For each model and mesh, the step is planned with `parallelize` (ShardParallel, or the preset `--method`
names, with default options) and compiled;
the collectives the plan expects (`ExecutionPlan.expected_collectives`: kind, mesh axes, bytes per device)
are set beside the ones in XLA's compiled program, and XLA's "[SPMD] Involuntary full rematerialization"
warnings are counted (XLA gave up on a reshard and rebuilt a whole tensor).

Targets: no involuntary rematerialization, and compiled collective bytes within 10 % of the planned bytes
on every row.

    python benchmarks/plan_fidelity.py [--models gpt-2,gpt-4,gpt-4-remat,gpt-4-scan,transformer,moe,convnet]
                                       [--meshes 8,2x4,2x2x2] [--method ShardParallel|DataParallel|...]

Models: GPT at 125M shapes with 2 and 4 layers (hidden 768, seq 1024, vocab 51200, batch 8, SGD; the
4-layer one also with jax.checkpoint on each block and as a lax.scan over stacked layers), a
Flax-style transformer LM (examples/train_transformer.py's, AdamW), an MoE layer stack
(benchmarks/models/moe.py at small shapes), and a conv net (the small Wide-ResNet). Nothing runs: the step
is only compiled.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))  # benchmarks.models; autopar as installed

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from benchmarks.models import gpt, small  # noqa: E402

import autopar  # noqa: E402

REMAT = "Involuntary full rematerialization"


def gpt_125m(layers: int, remat: bool = False, scan: bool = False):
    def build():
        cfg = gpt.GPTConfig(f"125M-{layers}", 1024, 768, layers, 12, 51200, batch=8)
        params = gpt.abstract_params(cfg)
        params = gpt.stack_layers(params) if scan else params
        return gpt.make_train_step(cfg, remat=remat), (params, *gpt.abstract_batch(cfg)), (1, 2)

    return build


def flax_transformer():
    sys.path.insert(1, str(ROOT / "examples"))
    import optax
    from flax.training import train_state
    from train_transformer import BATCH, SEQ, LanguageModel, train_step

    model = LanguageModel()
    tokens = jax.ShapeDtypeStruct((BATCH, SEQ + 1), jnp.int32)
    params = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((BATCH, SEQ), jnp.int32))
    state = jax.eval_shape(
        lambda p: train_state.TrainState.create(apply_fn=model.apply, params=p, tx=optax.adamw(3e-3)), params
    )
    return train_step, (state, tokens), (1,)


MODELS = {
    "gpt-2": gpt_125m(2),
    "gpt-4": gpt_125m(4),
    # The same step with each block under jax.checkpoint (optimization barriers), and as a lax.scan
    # over stacked layers (a while loop that autopar-unroll-loops writes out).
    "gpt-4-remat": gpt_125m(4, remat=True),
    "gpt-4-scan": gpt_125m(4, scan=True),
    "transformer": flax_transformer,
    "moe": small.moe_small,
    "convnet": small.wide_resnet_small,
}


# --method: ShardParallel (the solver's own plan) or one of its presets, each on the same mesh.
METHODS = ("ShardParallel", "DataParallel", "Zero2Parallel", "Zero3Parallel")


def measure(name: str, mesh: tuple[int, ...], method: str = "ShardParallel") -> dict:
    step, args, batch_argnums = MODELS[name]()
    planner = getattr(autopar, method)(mesh_shape=mesh)
    f = autopar.parallelize(step, method=planner, batch_argnums=batch_argnums)
    f.lower(*args)
    with _stderr_to_file() as captured:
        plan = f.get_execution_plan(*args)
    remats = captured.read().count(REMAT)
    return {
        "planned": plan.expected_counts(),
        "planned_bytes": plan.expected_bytes(),
        "compiled": plan.collective_counts(),
        "compiled_bytes": plan.collective_bytes(),
        "remats": remats,
        "status": plan.solver_status,
    }


class _stderr_to_file:
    """XLA warns from C++ on file descriptor 2: point it at a file while compiling."""

    def __enter__(self):
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(mode="w+")
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self._file

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        return False


def _counts(counts: dict[str, int]) -> str:
    short = {"all-reduce": "AR", "all-gather": "AG", "reduce-scatter": "RS", "all-to-all": "A2A"}
    short["collective-permute"] = "CP"
    return " ".join(f"{short[k]} {v}" for k, v in counts.items() if v) or "none"


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--meshes", default="8,2x4,2x2x2")
    parser.add_argument("--method", default="ShardParallel", choices=METHODS)
    args = parser.parse_args()
    print(
        "| model | mesh | status | planned | compiled | planned MiB | compiled MiB | bytes ratio | remats |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    worst, remats = 0.0, 0
    for name in args.models.split(","):
        for text in args.meshes.split(","):
            mesh = tuple(int(s) for s in text.split("x"))
            try:
                r = measure(name, mesh, args.method)
            except autopar.errors.AutoparError as err:  # a preset this step cannot take (its batch)
                print(f"| {name} | {text} | refused: {err} |" + " |" * 6, flush=True)
                continue
            planned, compiled = r["planned_bytes"], r["compiled_bytes"]
            ratio = compiled / planned if planned else (1.0 if not compiled else float("inf"))
            worst = max(worst, abs(ratio - 1.0))
            remats += r["remats"]
            cells = [
                name,
                text,
                r["status"],
                _counts(r["planned"]),
                _counts(r["compiled"]),
                _mib(planned),
                _mib(compiled),
                f"{ratio:.3f}",
                str(r["remats"]),
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nworst |compiled / planned - 1|: {worst:.3f} (target <= 0.10)")
    print(f"involuntary full rematerializations: {remats} (target 0)")


if __name__ == "__main__":
    main()

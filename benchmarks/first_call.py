"""The first call a user waits for: autopar's (plan + compile + run) against jax.jit's (trace + compile + run)
on the same 8 devices, each in a fresh process, for an MLP, a 2-layer transformer and a 4-layer Flax GPT-2
(transformers' FlaxGPT2LMHeadModel, random init). Also the driver's start-up: `autopar-opt --version` and
`--list-passes`.

Targets: planning under 1 s for programs under 2,000 ops; autopar's first call within 1.5x jax.jit's;
`--version` under 0.5 s, `--list-passes` under 1.5 s.

    python benchmarks/first_call.py [--models mlp,transformer,flax-gpt2] [--repeat 3]

jax.jit's arguments are placed as a data-parallel user places them (batch split over the devices,
parameters replicated); autopar's default method (ShardParallel over one axis of all devices) plans its own.
Figures are medians over --repeat fresh processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh process: builds the model, then times one first call. Prints one JSON line.
WORKER = r"""
import json, os, sys, time
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(1, sys.argv[3])
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from benchmarks.first_call import build
step, args, batch_argnums = build(sys.argv[1])
args = jax.tree.map(np.asarray, args)  # both start from host data, as from a loader or a checkpoint
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("x",))
if sys.argv[2] == "jit":
    start = time.perf_counter()
    def place(i, x):
        spec = P("x") if i in batch_argnums else P()
        return jax.tree.map(lambda a: jax.device_put(a, NamedSharding(mesh, spec)), x)

    placed = [place(i, x) for i, x in enumerate(args)]
    jax.block_until_ready(jax.jit(step)(*placed))
    print(json.dumps({"first_call": time.perf_counter() - start}))
else:
    import autopar
    f = autopar.parallelize(step, batch_argnums=batch_argnums)
    start = time.perf_counter()
    lowered = f.lower(*args)
    main = next(op for op in lowered.module.body.operations if op.operation.name == "func.func")
    ops = sum(1 for op in main.regions[0].blocks[0].operations if not op.operation.name.startswith("sdy."))
    jax.block_until_ready(f(*args))
    done = time.perf_counter()
    seconds = lowered.timings
    print(json.dumps(dict(first_call=done - start, lower=seconds["lower"], plan=seconds["plan"], ops=ops)))
"""


def build(name: str):
    """(step, concrete args, batch_argnums) of a model, random init from a small config."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    rng = np.random.default_rng(0)
    if name == "mlp":
        from benchmarks.models.small import mlp_sgd

        step, abstract, batch_argnums = mlp_sgd()
        args = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape) * 0.02, s.dtype), abstract)
        return step, args, batch_argnums
    if name == "transformer":
        from benchmarks.models import gpt

        cfg = gpt.GPTConfig("2-layer", seq_len=128, hidden=256, layers=2, heads=4, vocab=2048, batch=8)
        tokens = jnp.asarray(rng.integers(0, cfg.vocab, (cfg.batch, cfg.seq_len)), jnp.int32)
        return gpt.make_train_step(cfg), (gpt.init_params(cfg), tokens, tokens), (1, 2)
    if name == "flax-gpt2":
        from transformers import FlaxGPT2LMHeadModel, GPT2Config

        cfg = GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=2048, n_positions=128)
        model = FlaxGPT2LMHeadModel(cfg, seed=0)
        optimizer = optax.adamw(1e-3)

        def step(params, opt_state, tokens):
            def loss_fn(p):
                logits = model(tokens[:, :-1], params=p).logits
                return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        tokens = jnp.asarray(rng.integers(0, 2048, (8, 128)), jnp.int32)
        return step, (model.params, optimizer.init(model.params), tokens), (2,)
    raise ValueError(f"unknown model {name!r}")


def run_worker(name: str, mode: str) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run(
        [sys.executable, "-c", WORKER, name, mode, str(ROOT)], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name} {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_command(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autopar.opt", *args], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="mlp,transformer,flax-gpt2")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        "| model | ops | JAX lowering s | planning s | autopar first call s | jax.jit first call s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        ours = [run_worker(name, "autopar") for _ in range(args.repeat)]
        jit = [run_worker(name, "jit")["first_call"] for _ in range(args.repeat)]
        plan = statistics.median(r["plan"] for r in ours)
        lower = statistics.median(r["lower"] for r in ours)
        first = statistics.median(r["first_call"] for r in ours)
        base = statistics.median(jit)
        cells = [name, str(ours[0]["ops"]), f"{lower:.2f}", f"{plan:.2f}", f"{first:.2f}", f"{base:.2f}"]
        print("| " + " | ".join(cells) + f" | {first / base:.2f} |", flush=True)
    version = statistics.median(time_command(["--version"]) for _ in range(args.repeat))
    listing = statistics.median(time_command(["--list-passes"]) for _ in range(args.repeat))
    print(f"\nautopar-opt --version: {version:.2f} s (target < 0.5)")
    print(f"autopar-opt --list-passes: {listing:.2f} s (target < 1.5)")


if __name__ == "__main__":
    main()

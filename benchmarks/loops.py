"""What writing loops out costs: planning and first-call time of a step whose layers are a `lax.scan`, a
`fori_loop`, or a Python loop, at several trip counts (autopar-unroll-loops writes the first two out
while the copies add at most its `max-unrolled-ops` ops; past that the loop stays whole, replicated).

    python benchmarks/loops.py [--trips 4,32,100,1000] [--width 64] [--mesh 8] [--python-up-to 100]

Per row: the ops of the planned program, the loops left in it, seconds to plan (`f.lower`), seconds of
the first call (XLA's compile and one step), and whether the result equals jax.jit's. One process, one
row after another: compare rows, not runs.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import autopar  # noqa: E402


def forward(form: str, trips: int):
    def layer(w, h):
        return jnp.tanh(h @ w) + 0.1 * h

    def run(w, x):
        if form == "scan":
            return jax.lax.scan(lambda h, _: (layer(w, h), None), x, None, length=trips)[0]
        if form == "fori_loop":
            return jax.lax.fori_loop(0, trips, lambda i, h: layer(w, h), x)
        for _ in range(trips):
            x = layer(w, x)
        return x

    return run


def measure(form: str, trips: int, width: int, mesh: tuple[int, ...]) -> dict:
    run = forward(form, trips)

    def step(w, x):
        return jax.value_and_grad(lambda w: run(w, x).sum())(w)

    w = jnp.full((width, width), 0.01, jnp.float32)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((256, width)), jnp.float32)
    f = autopar.parallelize(step, method=autopar.ShardParallel(mesh_shape=mesh), batch_argnums=(1,))
    start = time.perf_counter()
    text = f.lower(w, x).as_text()
    planned = time.perf_counter() - start
    start = time.perf_counter()
    out = f(w, x)
    jax.block_until_ready(out)
    first = time.perf_counter() - start
    want = jax.jit(step)(w, x)
    same = all(np.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(out, want, strict=True))
    return {
        "ops": text.count(" = stablehlo.") + text.count(" = sdy."),
        "loops": text.count("stablehlo.while("),
        "plan_s": planned,
        "first_call_s": first,
        "equal": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trips", default="4,32,100,1000")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--mesh", default="8")
    parser.add_argument("--forms", default="scan,fori_loop,python")
    parser.add_argument(
        "--python-up-to",
        type=int,
        default=100,
        help="skip the Python loop past this many trips (JAX traces it out)",
    )
    args = parser.parse_args()
    mesh = tuple(int(s) for s in args.mesh.split("x"))
    print("| form | trips | ops planned | loops left | plan s | first call s | equals jax.jit |")
    print("|---|---|---|---|---|---|---|")
    for trips in (int(t) for t in args.trips.split(",")):
        for form in args.forms.split(","):
            if form == "python" and trips > args.python_up_to:
                continue
            r = measure(form, trips, args.width, mesh)
            print(
                f"| {form} | {trips} | {r['ops']} | {r['loops']} | {r['plan_s']:.2f} | "
                f"{r['first_call_s']:.2f} | {'yes' if r['equal'] else 'NO'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

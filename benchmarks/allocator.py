"""glibc malloc settings under which freed memory is kept for the next step, as an accelerator's allocator
keeps its pool: for benchmarks that time steps on virtual CPU devices standing in for accelerators.

With glibc's defaults, a step's large temporaries and collective buffers are handed back to the kernel
when freed and faulted in again, zeroed, by the next step: on the 2-layer GPT's tensor-parallel plan over 8
devices, 18,000 page faults and 45-75 ms of system time per 130 ms step, against none for its
data-parallel plan (docs/cost_model.md, "A second machine"). No accelerator pays that (XLA's GPU and TPU
runtimes allocate from a pool), and no cost model of one prices it. One arena, no trimming, a 256 MiB top
pad and no mmap at all make every step after the first fault-free. glibc reads these variables when a
process starts, so `reexec_pooled` starts the benchmark again with them set.

Why no mmap: glibc's largest mmap threshold is 32 MiB, and a block above it is always mapped afresh and
unmapped when freed, whatever the threshold. With the threshold alone the MLP's ZeRO-3 plans, whose
temporaries XLA allocates as one 32 MiB block per device and step, still took 44,000 page faults per step
and ran 2.2-2.3x their prediction; without mmap, none and 1.5-1.6x (docs/cost_model.md, "Plans over one
axis and plans over two").
"""

from __future__ import annotations

import os
import sys

POOLED = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),  # glibc's largest (larger blocks are always mapped afresh)
    "MALLOC_TRIM_THRESHOLD_": str(16 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
    "MALLOC_MMAP_MAX_": "0",  # ... unless mmap is off: then every block comes from the heap, which keeps it
}


def reexec_pooled() -> None:
    """Starts this script again under `POOLED`, unless it already runs under it (returns then)."""
    if all(os.environ.get(k) == v for k, v in POOLED.items()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **POOLED})

"""`autopar.grad` and `autopar.value_and_grad`: Alpa's names for `jax.grad` and `jax.value_and_grad`.

Alpa needed its own versions to mark where the gradients are complete, for gradient accumulation over
micro-batches. autopar finds that itself: every value of the step is classified by how it combines over
micro-batches (ir/micro_batch.py), gradients included. So these are JAX's functions under Alpa's names,
and code written for Alpa runs unchanged. One difference: Alpa averaged auxiliary outputs over the
micro-batches whatever they were, while here each combines exactly (a mean, a sum, a concatenation) or the
step is refused with the reason; `PipeshardParallel(approximate_combine=True)` averages as Alpa did.
"""

from __future__ import annotations

import jax

grad = jax.grad
value_and_grad = jax.value_and_grad

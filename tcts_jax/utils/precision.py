"""Compute precision: the dtypes a config may name, and params cast to one.

Training and sampling both keep float32 weights and may run their forward passes on bfloat16 copies
(`train.compute_dtype`, `sampler.compute_dtype`); softmaxes, losses and sampling logits stay float32.
"""

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def cast_floating(tree, dtype):
  """Floating-point leaves of `tree` as `dtype` (integer leaves unchanged)."""
  return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

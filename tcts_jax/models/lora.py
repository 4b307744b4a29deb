"""Low-rank adapters (LoRA, Hu et al. 2021) on a frozen model's kernels, as pure functions of param trees.

The adapted model is the frozen one with every targeted kernel W replaced by W + (alpha / rank) A B, A (in, r)
and B (r, out), in-features being the kernel's leading axes. B starts at zero, so a fresh adapter leaves the
model exactly as it was. Nothing here touches a module: `merge` returns params the unchanged module applies,
so the adapter trains and samples through the model's own code (docs/design.md §15).
"""

import math
import re
from typing import Optional

import flax.traverse_util
import jax
import jax.numpy as jnp

# The generator's kernels an adapter targets: self-attention query/key/value/out, cross-attention query/out (the
# text's keys and values stay the frozen model's, so one text state serves both), the MLP. Paths are joined
# with '/'; the value is how many leading kernel axes are in-features ('out' maps (heads, head_dim) -> width).
GENERATOR_TARGETS = (
  (r'block_\d+/self_attn/(query|key|value)/kernel', 1),
  (r'block_\d+/self_attn/out/kernel', 2),
  (r'block_\d+/cross_attn/query/kernel', 1),
  (r'block_\d+/cross_attn/out/kernel', 2),
  (r'block_\d+/MlpBlock_0/Dense_\d+/kernel', 1),
)


def targets(params, patterns=GENERATOR_TARGETS) -> dict:
  """{path: number of in-feature axes} of the kernels of `params` that `patterns` name."""
  found = {}
  for path in flax.traverse_util.flatten_dict(params, sep='/'):
    for pattern, in_axes in patterns:
      if re.fullmatch(pattern, path):
        found[path] = in_axes
  if not found:
    raise ValueError('no kernel of these params matches the adapter targets')
  return found


def init(rng, params, rank: int, patterns=GENERATOR_TARGETS) -> dict:
  """A fresh adapter for the targeted kernels of `params`: a tree like `params` holding, under each targeted
  kernel's path, {'a': (in, rank), 'b': (rank, out)}. A ~ N(0, 1/in) (as a Dense kernel), B = 0, so `merge`
  returns `params` unchanged."""
  if rank < 1:
    raise ValueError(f'adapter rank must be >= 1, got {rank}')
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  adapter = {}
  for i, (path, in_axes) in enumerate(sorted(targets(params, patterns).items())):
    shape = flat[path].shape
    fan_in, fan_out = math.prod(shape[:in_axes]), math.prod(shape[in_axes:])
    a = jax.random.normal(jax.random.fold_in(rng, i), (fan_in, rank)) / math.sqrt(fan_in)
    adapter[f'{path}/a'], adapter[f'{path}/b'] = a, jnp.zeros((rank, fan_out))
  return flax.traverse_util.unflatten_dict(adapter, sep='/')


def merge(params, adapter: Optional[dict], alpha: float) -> dict:
  """`params` with every adapted kernel W replaced by W + (alpha / rank) A B (reshaped to W's shape)."""
  if not adapter:
    return params
  flat = dict(flax.traverse_util.flatten_dict(params, sep='/'))
  factors = flax.traverse_util.flatten_dict(adapter, sep='/')
  for path in sorted({key.rpartition('/')[0] for key in factors}):
    if path not in flat:
      raise ValueError(f'the adapter targets {path!r}, which these params do not have')
    a, b = factors[f'{path}/a'], factors[f'{path}/b']
    kernel, rank = flat[path], a.shape[-1]
    delta = (alpha / rank) * (a @ b)
    flat[path] = kernel + delta.reshape(kernel.shape).astype(kernel.dtype)
  return flax.traverse_util.unflatten_dict(flat, sep='/')

"""Generating a row's images for held-out captions, sharded over a 'data' mesh axis of all devices.

Image i's rng is fold_in(key(seed), i) and every image is sampled on its own (vmap of the batch-of-one
sampler over per-image keys), so an image does not depend on the batch size, the device count or which
other images share its batch, and every row sees the same captions and seeds (paired comparisons).
A sampler that needs reference tokens (the oracle strategies) gets each image's own, sharded like its
caption; one built with diagnostics=True also returns each image's per-step diagnostics and midpoint x̂.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def example_keys(seed: int, indices) -> np.ndarray:
  """(n, key words) uint32 key data: fold_in(key(seed), i) per global image index i."""
  base = jax.random.key(seed)
  return np.asarray(jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(base, i)))(jnp.asarray(indices)))


# The sampler's per-step diagnostics a row keeps (SampleOutput.diagnostics, each (T, B); docs/design.md §2.3).
DIAGNOSTICS = ('decided', 'revoked', 'churn', 'entropy_masked', 'entropy_visible')


def per_image_arrays(sampler) -> dict:
  """{name: per-image shape} of what generation returns besides tokens and images, for this sampler."""
  if not sampler.diagnostics:
    return {}
  steps = {f'diagnostics/{k}': (sampler.cfg.steps,) for k in DIAGNOSTICS}
  return {'midpoint_tokens': (sampler.model.num_tokens,), **steps}


def make_generate(sampler, mesh: Mesh):
  """jit(params, text_ids (B, L), key_data (B, 2), reference (B, N) or None) -> tokens (B, N), uint8 images
  and {name: (B, ...)} of `per_image_arrays`; the batch split over 'data'."""
  data, replicated = NamedSharding(mesh, P('data')), NamedSharding(mesh, P())

  def one(params, ids, key_data, reference):
    kwargs = {'reference_tokens': reference[None]} if reference is not None else {}
    out = sampler(params, ids[None], jax.random.wrap_key_data(key_data), **kwargs)
    arrays = {}
    if sampler.diagnostics:
      arrays = {f'diagnostics/{k}': out.diagnostics[k][:, 0] for k in DIAGNOSTICS}
      arrays['midpoint_tokens'] = out.diagnostics['midpoint_tokens'][0]
    return out.tokens[0], out.images[0], arrays

  def generate(params, text_ids, key_data, reference):
    tokens, images, arrays = jax.vmap(one, in_axes=(None, 0, 0, 0))(params, text_ids, key_data, reference)
    return tokens, jnp.round(jnp.clip(images, 0.0, 1.0) * 255).astype(jnp.uint8), arrays  # as visualize.to_uint8

  return jax.jit(generate, in_shardings=(replicated, data, data, data), out_shardings=data)


def to_global(x: np.ndarray, sharding) -> jax.Array:
  """A host array (the same on every process) as a global array with `sharding`."""
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x: jax.Array) -> np.ndarray:
  return np.asarray(x) if x.is_fully_addressable else np.asarray(multihost_utils.process_allgather(x, tiled=True))


def padded_batch_size(batch_size: int, num_devices: int) -> int:
  return -(-batch_size // num_devices) * num_devices


def padded(indices: np.ndarray, batch: int) -> np.ndarray:
  """`indices` padded to `batch` by repeating the last one (per-image keys make the repeat harmless)."""
  return np.concatenate([indices, np.repeat(indices[-1:], batch - len(indices))])


class ShardGenerator:
  """Generates images of one grid entry, batch by batch (compiled once, ahead of time)."""

  def __init__(self, sampler, mesh: Mesh, params, text_length: int, batch_size: int, seed: int):
    self.params, self.seed = params, seed
    self.needs_reference = sampler.needs_reference
    self.batch = padded_batch_size(batch_size, mesh.size)
    self.data = NamedSharding(mesh, P('data'))
    start = time.perf_counter()
    ids = jax.ShapeDtypeStruct((self.batch, text_length), jnp.int32, sharding=self.data)
    keys = jax.ShapeDtypeStruct((self.batch,) + example_keys(seed, [0]).shape[1:], jnp.uint32, sharding=self.data)
    n = sampler.model.num_tokens
    reference = jax.ShapeDtypeStruct((self.batch, n), jnp.int32, sharding=self.data) if self.needs_reference else None
    self.compiled = make_generate(sampler, mesh).lower(params, ids, keys, reference).compile()
    self.compile_seconds = time.perf_counter() - start

  def __call__(self, indices, text_ids, reference_tokens=None) -> dict:
    """tokens, images, the sampler's per-image arrays (`per_image_arrays`) and generation seconds for images
    `indices` with caption ids `text_ids` (n, L) and, for a sampler that needs them, `reference_tokens` (n, N)."""
    if self.needs_reference and reference_tokens is None:
      raise ValueError('this sampler needs reference_tokens (the tokens of a real image per caption)')
    parts, seconds, slots = [], 0.0, 0
    for start in range(0, len(indices), self.batch):
      idx, ids = indices[start : start + self.batch], text_ids[start : start + self.batch]
      rows = padded(np.arange(len(idx)), self.batch)
      reference = None
      if self.needs_reference:
        reference = to_global(np.asarray(reference_tokens[start : start + self.batch], np.int32)[rows], self.data)
      t0 = time.perf_counter()
      tok, img, arrays = self.compiled(
        self.params,
        to_global(ids[rows], self.data),
        to_global(example_keys(self.seed, idx[rows]), self.data),
        reference,
      )
      out = {'tokens': tok, 'images': img, **arrays}
      out = {k: to_host(v)[: len(idx)] for k, v in out.items()}  # waits for the device
      seconds += time.perf_counter() - t0
      slots += self.batch
      parts.append(out)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {**out, 'seconds': seconds, 'slots': slots}

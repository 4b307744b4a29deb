"""Generating a row's images for held-out captions, sharded over a 'data' mesh axis of all devices.

Image i's rng is fold_in(key(seed), i) and every image is sampled on its own (vmap of the batch-of-one
sampler over per-image keys), so an image does not depend on the batch size, the device count or which
other images share its batch, and every row sees the same captions and seeds (paired comparisons).
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


def make_generate(sampler, mesh: Mesh):
  """jit(params, text_ids (B, L), key_data (B, 2)) -> tokens (B, N), uint8 images; batch split over 'data'."""
  data, replicated = NamedSharding(mesh, P('data')), NamedSharding(mesh, P())

  def one(params, ids, key_data):
    out = sampler(params, ids[None], jax.random.wrap_key_data(key_data))
    return out.tokens[0], out.images[0]

  def generate(params, text_ids, key_data):
    tokens, images = jax.vmap(one, in_axes=(None, 0, 0))(params, text_ids, key_data)
    return tokens, jnp.round(jnp.clip(images, 0.0, 1.0) * 255).astype(jnp.uint8)  # as visualize.to_uint8

  return jax.jit(generate, in_shardings=(replicated, data, data), out_shardings=(data, data))


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
    self.batch = padded_batch_size(batch_size, mesh.size)
    self.data = NamedSharding(mesh, P('data'))
    start = time.perf_counter()
    ids = jax.ShapeDtypeStruct((self.batch, text_length), jnp.int32, sharding=self.data)
    keys = jax.ShapeDtypeStruct((self.batch,) + example_keys(seed, [0]).shape[1:], jnp.uint32, sharding=self.data)
    self.compiled = make_generate(sampler, mesh).lower(params, ids, keys).compile()
    self.compile_seconds = time.perf_counter() - start

  def __call__(self, indices, text_ids) -> dict:
    """tokens, images and generation seconds for images `indices` with caption ids `text_ids` (n, L)."""
    tokens, images, seconds, slots = [], [], 0.0, 0
    for start in range(0, len(indices), self.batch):
      idx, ids = indices[start : start + self.batch], text_ids[start : start + self.batch]
      rows = padded(np.arange(len(idx)), self.batch)
      t0 = time.perf_counter()
      tok, img = self.compiled(
        self.params, to_global(ids[rows], self.data), to_global(example_keys(self.seed, idx[rows]), self.data)
      )
      tok, img = to_host(tok), to_host(img)  # waits for the device
      seconds += time.perf_counter() - t0
      slots += self.batch
      tokens.append(tok[: len(idx)])
      images.append(img[: len(idx)])
    return {'tokens': np.concatenate(tokens), 'images': np.concatenate(images), 'seconds': seconds, 'slots': slots}

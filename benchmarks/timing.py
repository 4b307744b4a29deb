"""Shared by the benchmarks in this folder (run as scripts, so they import it as `timing`): timing, this
machine's matmul peak, and the default-size shapes model with random weights on a canvas of a chosen size."""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.data import get_dataset, shapes
from tcts_jax.models import build_models, init_params
from tcts_jax.utils.compilation import jit_one_off
from tcts_jax.utils.config import load_config

DOWNSAMPLE = 4  # the shapes tokenizer: a token per 4x4 pixels


def median_seconds(fn, repeats):
  """Median wall time of `fn()` over `repeats` runs after one warm-up call (compilation)."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
  """This machine's matmul rate in `dtype` (float32 unless said): an n^3 jitted matmul."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  matmul = jax.jit(lambda x: x @ x)
  return 2 * n**3 / median_seconds(lambda: matmul(a), repeats) / 1e9


def shapes_model(grid: int | None = None, codebook: int | None = None):
  """(config, models, params): `configs/shapes.py:sample` sizes with random weights (speed does not depend on
  them), on a `grid` x `grid` token canvas and a codebook of `codebook` codes (None: the config's)."""
  config = load_config('configs/shapes.py:sample')
  with config.unlocked():
    if grid is not None:
      config.data.image_size = DOWNSAMPLE * grid
    if codebook is not None:
      config.tokenizer.codebook_size = codebook
  models = build_models(config, get_dataset(config.data).vocabulary())
  return config, models, jit_one_off(lambda r: init_params(models, config.data.image_size, r))(jax.random.key(0))


def caption_ids(models, batch: int):
  """Word ids (batch, L) of `batch` random captioned-shapes captions."""
  prompts = [
    shapes.caption(shapes.sample_scene(np.random.default_rng(i)), np.random.default_rng(i)) for i in range(batch)
  ]
  return jnp.asarray(models.text_tokenizer.encode_batch(prompts))

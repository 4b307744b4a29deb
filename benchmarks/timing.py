"""Shared by the benchmarks in this folder (run as scripts, so they import it as `timing`): timing, this
machine's matmul peak, where a compiled program spends its time, and the default-size shapes model with random
weights on a canvas of a chosen size."""

import collections
import gzip
import json
import pathlib
import re
import statistics
import tempfile
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


def compiled_flops(compiled) -> float:
  """XLA's FLOP count of a compiled program (`jax.jit(f).lower(...).compile()`; some versions return a list)."""
  cost = compiled.cost_analysis()
  return float((cost[0] if isinstance(cost, (list, tuple)) else cost).get('flops', 0.0))


def matmul_gflops(rows: int, inner: int, cols: int, repeats: int = 5, dtype=jnp.float32) -> float:
  """The rate of one jitted (rows, inner) @ (inner, cols) matmul in `dtype`, GFLOP/s."""
  a = jax.random.normal(jax.random.key(0), (rows, inner), dtype)
  b = jax.random.normal(jax.random.key(1), (inner, cols), dtype)
  matmul = jax.jit(lambda x, y: x @ y)
  return 2 * rows * inner * cols / median_seconds(lambda: matmul(a, b), repeats) / 1e9


def matmul_peak_gflops(n: int | None = None, repeats: int = 5, dtype=jnp.float32) -> float:
  """This machine's matmul rate in `dtype` (float32 unless said): an n^3 jitted matmul, n = 2048 on CPU and 8192 on
  accelerators (where a 2048^3 one takes microseconds and would time the dispatch)."""
  n = n or (2048 if jax.default_backend() == 'cpu' else 8192)
  return matmul_gflops(n, n, n, repeats, dtype)


# XLA:CPU names its matmul thunks 'ynn_fusion.<n>' (matmuls and what they fused, run by YNNPACK) or 'dot.<n>',
# 'dot_general.<n>'; the profiler also records runtime and Python events, which are not ops of the program.
MATMUL_OPS = ('ynn_fusion', 'dot', 'dot_general', 'convolution')
NOT_OPS = ('$', 'ThunkExecutor', 'PjitFunction', 'SlinkyThreadPool', 'CommonPjRt', 'end: ')


def op_time_shares(fn, repeats: int = 3, top: int = 6) -> dict:
  """Where `fn()` (a compiled program, already warm) spends its time: a `jax.profiler` trace of `repeats` calls,
  the time of each XLA op summed over ops of one kind (the name without its '.<n>' suffix, e.g. all
  'copy_bitcast_fusion.<n>' together), as shares of the ops' total. Returns {'matmul': share of MATMUL_OPS, and
  the `top` largest kinds: share}. Ops that run at once on two threads both count, so shares are of op time,
  not of wall time."""
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(repeats):
        jax.block_until_ready(fn())
    (trace,) = pathlib.Path(trace_dir).rglob('*.trace.json.gz')
    events = json.loads(gzip.decompress(trace.read_bytes()))['traceEvents']
  kinds = collections.Counter()
  for event in events:
    if event.get('ph') == 'X' and not event['name'].startswith(NOT_OPS):
      kinds[re.sub(r'\.\d+$', '', event['name'])] += event['dur']
  total = sum(kinds.values())
  shares = {'matmul': round(sum(kinds[k] for k in MATMUL_OPS) / total, 3)}
  shares.update((kind, round(us / total, 3)) for kind, us in kinds.most_common(top))
  return shares


def shapes_model(grid: int | None = None, codebook: int | None = None, overrides: dict | None = None):
  """(config, models, params): `configs/shapes.py:sample` sizes with random weights (speed does not depend on
  them), on a `grid` x `grid` token canvas and a codebook of `codebook` codes (None: the config's), with
  `overrides` ({'generator.width': 1024, ...}, dotted config fields) applied."""
  config = load_config('configs/shapes.py:sample')
  with config.unlocked():
    if grid is not None:
      config.data.image_size = DOWNSAMPLE * grid
    if codebook is not None:
      config.tokenizer.codebook_size = codebook
    config.update_from_flattened_dict(overrides or {})
  models = build_models(config, get_dataset(config.data).vocabulary())
  return config, models, jit_one_off(lambda r: init_params(models, config.data.image_size, r))(jax.random.key(0))


def caption_ids(models, batch: int):
  """Word ids (batch, L) of `batch` random captioned-shapes captions."""
  prompts = [
    shapes.caption(shapes.sample_scene(np.random.default_rng(i)), np.random.default_rng(i)) for i in range(batch)
  ]
  return jnp.asarray(models.text_tokenizer.encode_batch(prompts))

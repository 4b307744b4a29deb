"""Shared by the benchmarks in this folder (run as scripts, so they import it as `timing`)."""

import statistics
import time

import jax


def median_seconds(fn, repeats):
  """Median wall time of `fn()` over `repeats` runs after one warm-up call (compilation)."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)

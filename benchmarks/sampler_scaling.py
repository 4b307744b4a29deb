r"""How does the sampler's time grow with steps, tokens, batch and codebook? Measured, plotted, and fitted.

  python benchmarks/sampler_scaling.py [--repeats=3] [--strategy=uniform] [--out=results/sampler_scaling]

Model: the default `configs/shapes.py` sizes (generator width 128, 4 layers) with random weights (speed does not
depend on them). From a base point (8 steps, 16x16 tokens, batch 4, codebook 1024) one factor at a time varies:
steps 4/8/16, grid 8x8/16x16/32x32, batch 1/4/16, codebook 256/1024/8192. Each point: the median of `repeats`
compiled runs of the whole sampler (tokens only) after warm-up, and its peak memory (XLA memory analysis:
arguments + outputs + temporaries).

Cost model, fitted by least squares to the per-step times of all points:
  seconds / step = c0 + c1 B N + c2 B N^2 + c3 B N K
(B batch, N tokens, K codebook: fixed cost, the per-token work of the layers, attention, the logits and the
draw over the codebook), reported with each point's relative error. Writes `<out>.png` (time against each
factor, measured and fitted) and `<out>.json`; the LAST line printed is the same JSON object.
"""

import argparse
import datetime
import json
import pathlib

import jax
import matplotlib
import numpy as np
from timing import caption_ids, median_seconds, shapes_model

from tcts_jax.sampling.sampler import Sampler, sampler_config

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # after choosing the headless backend

BASE = {'steps': 8, 'grid': 16, 'batch': 4, 'codebook': 1024}
SWEEP = {'steps': (4, 8, 16), 'grid': (8, 16, 32), 'batch': (1, 4, 16), 'codebook': (256, 1024, 8192)}


def points() -> list:
  """The base point and every one-factor variation of it, each once."""
  found = []
  for factor, values in SWEEP.items():
    for value in values:
      point = {**BASE, factor: value}
      if point not in found:
        found.append(point)
  return found


def measure(point: dict, strategy: str, repeats: int) -> dict:
  config, models, params = shapes_model(point['grid'], point['codebook'])
  cfg = sampler_config(config.sampler, strategy=strategy, steps=point['steps'])
  sampler = Sampler(models.masked_generator(), cfg, models.token_selector(), decode=False)
  ids = caption_ids(models, point['batch'])
  memory = sampler.lower(params, ids, jax.random.key(0)).compile().memory_analysis()
  peak = (
    memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes - memory.alias_size_in_bytes
  )
  seconds = median_seconds(lambda: sampler(params, ids, jax.random.key(0)).tokens, repeats)
  return {
    **point,
    'tokens': point['grid'] ** 2,
    'seconds': round(seconds, 4),
    'seconds_per_step': round(seconds / point['steps'], 5),
    'peak_mib': round(peak / 2**20, 1),
  }


def features(rows) -> np.ndarray:
  """The cost model's terms per row: 1, B N, B N^2, B N K."""
  b, n, k = (np.array([r[key] for r in rows], np.float64) for key in ('batch', 'tokens', 'codebook'))
  return np.stack([np.ones_like(b), b * n, b * n**2, b * n * k], axis=1)


def fit(rows) -> np.ndarray:
  """The cost model's coefficients: least squares on per-step seconds, each row divided by its own time (so the
  fit minimises relative errors and the small configurations count as much as the large ones)."""
  x, y = features(rows), np.array([r['seconds_per_step'] for r in rows])
  coefficients, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
  return coefficients


def plot(rows, coefficients, path: pathlib.Path):
  """Top row: seconds per sampler call against each factor (the others at BASE), measured and the cost model's;
  bottom row: peak memory."""
  fig, axes = plt.subplots(2, len(SWEEP), figsize=(4 * len(SWEEP), 6.4))
  for column, (factor, values) in enumerate(SWEEP.items()):
    chosen = [r for r in rows if all(r[f] == BASE[f] for f in SWEEP if f != factor)]
    chosen.sort(key=lambda r: r[factor])
    xs = [r[factor] for r in chosen]
    time_ax, memory_ax = axes[0, column], axes[1, column]
    time_ax.plot(xs, [r['seconds'] for r in chosen], 'o', label='measured')
    predicted = features(chosen) @ coefficients * np.array([r['steps'] for r in chosen])
    time_ax.plot(xs, predicted, '-', label='cost model')
    time_ax.set_ylabel('seconds per sampler call')
    memory_ax.plot(xs, [r['peak_mib'] for r in chosen], 's-', color='tab:green')
    memory_ax.set_ylabel('peak memory (MiB)')
    memory_ax.set_xlabel({'grid': 'grid side (tokens N = side²)'}.get(factor, factor))
    for ax in (time_ax, memory_ax):
      ax.set_xscale('log', base=2)
      ax.set_yscale('log')
      ax.set_xticks(values, [str(v) for v in values])
  axes[0, 0].legend()
  fig.suptitle(f'sampler time; base: {BASE} ({jax.devices()[0].device_kind})', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--strategy', default='uniform')
  parser.add_argument('--out', default='results/sampler_scaling')
  args = parser.parse_args()
  rows = []
  for point in points():
    rows.append(measure(point, args.strategy, args.repeats))
    r = rows[-1]
    print(
      f'steps {r["steps"]:3d} grid {r["grid"]:3d} batch {r["batch"]:3d} codebook {r["codebook"]:5d}: '
      f'{r["seconds"]:8.3f} s ({r["seconds_per_step"] * 1e3:8.1f} ms/step), peak {r["peak_mib"]:8.1f} MiB',
      flush=True,
    )
  coefficients = fit(rows)
  predicted = features(rows) @ coefficients
  for r, p in zip(rows, predicted):
    r['model_relative_error'] = round(float(p / r['seconds_per_step'] - 1), 3)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  plot(rows, coefficients, out.with_suffix('.png'))
  result = {
    'date': datetime.date.today().isoformat(),
    'device': jax.devices()[0].device_kind,
    'strategy': args.strategy,
    'cost_model': 'seconds/step = c0 + c1 B N + c2 B N^2 + c3 B N K',
    'coefficients': {  # c0 in ms; c1 in µs per image-token; c2 in ns per image-token²; c3 in ns per token-code
      'c0_ms': float(f'{coefficients[0] * 1e3:.3g}'),
      'c1_us': float(f'{coefficients[1] * 1e6:.3g}'),
      'c2_ns': float(f'{coefficients[2] * 1e9:.3g}'),
      'c3_ns': float(f'{coefficients[3] * 1e9:.3g}'),
    },
    'max_abs_relative_error': max(abs(r['model_relative_error']) for r in rows),
    'points': rows,
  }
  out.with_suffix('.json').write_text(json.dumps(result, indent=1) + '\n')
  print(
    f'cost model: {result["cost_model"]}, {result["coefficients"]}; worst point off by '
    f'{result["max_abs_relative_error"]:.0%}; plot: {out.with_suffix(".png")}'
  )
  print(json.dumps(result))


if __name__ == '__main__':
  main()

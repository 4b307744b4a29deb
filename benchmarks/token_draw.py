r"""What does the token draw cost, next to a whole sampler step?

  python benchmarks/token_draw.py [--batch=4] [--grid=16] [--codebooks=1024,8192] [--steps=8] [--repeats=5]

At each codebook size, on the logits of `batch` images of `grid` x `grid` tokens, the median time of
  - flat: the earlier draw, kept here as the reference: softmax, cumulative sum and comparison over the
    whole codebook, then `log_softmax` again for log p(x̂);
  - two_level: `select.draw_categorical` (the sampler's draw: docs/design.md §2.1) and log p(x̂) from its
    log normaliser;
  - argmax: no draw at all (a floor, not a sampler);
and one step of the `uniform` sampler (default `configs/shapes.py` generator sizes, random weights, tokens
only) on the same shapes: its T-step time / T. Each draw is reported as a fraction of that step. The LAST
line printed is one JSON object.
"""

import argparse
import json

import jax
import jax.numpy as jnp

from tcts_jax.sampling.sampler import Sampler, sampler_config
from tcts_jax.sampling.select import draw_categorical
from timing import caption_ids, median_seconds, shapes_model


def flat_draw(rng, logits):
  """The draw the sampler used before: a flat inverse CDF, then log p(x̂) through a second softmax."""
  cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
  u = jax.random.uniform(rng, logits.shape[:-1] + (1,), cdf.dtype) * cdf[..., -1:]
  x = jnp.minimum(jnp.sum(cdf < u, axis=-1), logits.shape[-1] - 1)
  return x, jnp.take_along_axis(jax.nn.log_softmax(logits), x[..., None], axis=-1)[..., 0]


def two_level_draw(rng, logits):
  x, log_normaliser = draw_categorical(rng, logits)
  return x, jnp.take_along_axis(logits, x[..., None], axis=-1)[..., 0] - log_normaliser


def argmax_floor(rng, logits):
  x = jnp.argmax(logits, axis=-1)
  return x, jnp.take_along_axis(logits, x[..., None], axis=-1)[..., 0]


def sampler_step_seconds(grid: int, codebook: int, batch: int, steps: int, repeats: int) -> float:
  config, models, params = shapes_model(grid, codebook)
  ids = caption_ids(models, batch)
  sampler = Sampler(
    models.masked_generator(), sampler_config(config.sampler, strategy='uniform', steps=steps), decode=False
  )
  return median_seconds(lambda: sampler(params, ids, jax.random.key(1)).tokens, repeats) / steps


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--grid', type=int, default=16)
  parser.add_argument('--codebooks', default='1024,8192')
  parser.add_argument('--steps', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  rows = []
  for codebook in map(int, args.codebooks.split(',')):
    logits = 3 * jax.random.normal(jax.random.key(0), (args.batch, args.grid**2, codebook), jnp.float32)
    step = sampler_step_seconds(args.grid, codebook, args.batch, args.steps, args.repeats)
    row = {'codebook': codebook, 'sampler_step_ms': round(step * 1e3, 2)}
    for name, draw in [('flat', flat_draw), ('two_level', two_level_draw), ('argmax', argmax_floor)]:
      jitted = jax.jit(draw)
      seconds = median_seconds(lambda: jitted(jax.random.key(1), logits), args.repeats)
      row[f'{name}_ms'] = round(seconds * 1e3, 3)
      row[f'{name}_fraction_of_step'] = round(seconds / step, 4)
    print(
      f'codebook {codebook:5d}: step {row["sampler_step_ms"]:.1f} ms; draw + log p: flat {row["flat_ms"]:.2f} ms '
      f'({row["flat_fraction_of_step"]:.1%}), two-level {row["two_level_ms"]:.2f} ms '
      f'({row["two_level_fraction_of_step"]:.1%}), argmax {row["argmax_ms"]:.2f} ms',
      flush=True,
    )
    rows.append(row)
  print(
    json.dumps({'device': jax.devices()[0].device_kind, 'batch': args.batch, 'tokens': args.grid**2, 'configs': rows})
  )


if __name__ == '__main__':
  main()

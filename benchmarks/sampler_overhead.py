r"""How much does the sampling logic cost on top of the network forwards it must run anyway?

  python benchmarks/sampler_overhead.py [--batch=16] [--steps=16] [--repeats=5]

Model: the default `configs/shapes.py` sizes (generator width 128, 4 layers, 64 tokens, codebook 1024;
selector from its config section), random weights (speed does not depend on them).
For each strategy, after warm-up, median of `repeats` runs:
  (a) T x [one CFG generator forward (cond + uncond in one batch) + the selector forward(s) when used]
      + the text side once (text encoder and the cross-attention keys / values of every layer),
  (b) the full T-step sampler (tokens only, no image decoding: decoding is the same for all strategies),
and overhead_ratio = (b) / (a). Also the compiled sampler's peak memory for batch 64 at 16 steps
(XLA memory analysis: arguments + outputs + temporaries). The LAST line printed is one JSON object.
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.data import get_dataset, shapes
from tcts_jax.models import build_models, init_params
from tcts_jax.sampling.model import guided_selector_logits
from tcts_jax.sampling.sampler import Sampler, sampler_config
from tcts_jax.sampling.strategies import PRESETS, STRATEGIES
from tcts_jax.utils.config import load_config
from timing import median_seconds

# Every named strategy, and one switching preset (the others cost the same).
BENCHMARKED = [*STRATEGIES, next(iter(PRESETS))]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--steps', type=int, default=16)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--memory_batch', type=int, default=64)
  args = parser.parse_args()

  config = load_config('configs/shapes.py:sample')
  models = build_models(config, get_dataset(config.data).vocabulary())
  model, selector = models.masked_generator(), models.token_selector()
  params = init_params(models, config.data.image_size, jax.random.key(0))
  has_selector = 'selector' in params
  b, t = args.batch, args.steps
  prompts = [shapes.caption(shapes.sample_scene(np.random.default_rng(i)), np.random.default_rng(i)) for i in range(b)]
  ids = jnp.asarray(models.word_tokenizer.encode_batch(prompts))

  @jax.jit
  def text_forward(p, ids):  # what the sampler does once, before its loop
    return model.encode_text(p, ids, None), selector.encode_text(p, ids, None)

  text, selector_text = text_forward(params, ids)
  tokens = jnp.full((2 * b, models.num_tokens), models.mask_id).at[:, ::3].set(5)

  @jax.jit
  def generator_cfg_forward(p):
    return model.logits(p, tokens, text, config.sampler.fas_layer)

  @jax.jit
  def selector_forward(p):  # with the sampler's selector guidance (g = 1: the conditional half only)
    return guided_selector_logits(
      selector, p, tokens[:b] % models.mask_id, jnp.full((b,), 0.5), selector_text, config.sampler.selector_guidance
    )

  t_text = median_seconds(lambda: text_forward(params, ids), args.repeats)
  t_gen = median_seconds(lambda: generator_cfg_forward(params), args.repeats)
  t_sel = median_seconds(lambda: selector_forward(params), args.repeats) if has_selector else None

  rows, ratios = [], {}
  for name in BENCHMARKED:
    cfg = sampler_config(config.sampler, strategy=name, steps=t)
    sampler = Sampler(model, cfg, selector, decode=False)
    if sampler.needs_selector and not has_selector:
      continue
    reference = jnp.zeros((b, models.num_tokens), jnp.int32) if sampler.needs_reference else None  # oracle*
    t_sampler = median_seconds(
      lambda: sampler(params, ids, jax.random.key(1), reference_tokens=reference).tokens, args.repeats
    )
    per_step = t_gen + (t_sel if sampler.needs_selector else 0.0)
    denominator = t * per_step + t_text
    ratios[name] = t_sampler / denominator
    rows.append((name, t_sampler, denominator, ratios[name]))

  cfg = sampler_config(config.sampler, strategy='fas', steps=16)
  mem_ids = jnp.asarray(models.word_tokenizer.encode_batch(prompts * (args.memory_batch // b + 1))[: args.memory_batch])
  analysis = (
    Sampler(model, cfg, selector)._sample.lower(params, mem_ids, jax.random.key(0), None).compile().memory_analysis()
  )
  peak = (
    analysis.argument_size_in_bytes
    + analysis.output_size_in_bytes
    + analysis.temp_size_in_bytes
    - analysis.alias_size_in_bytes
  )

  print(
    f'device: {jax.devices()[0].device_kind}, batch {b}, {t} steps, generator '
    f'{config.generator.num_layers}x{config.generator.width}, {models.num_tokens} tokens'
  )
  print(
    f'one CFG generator forward {t_gen * 1e3:.2f} ms, text encoder {t_text * 1e3:.2f} ms'
    + (f', selector {t_sel * 1e3:.2f} ms' if t_sel else '')
  )
  print(f'{"strategy":<15}{"sampler s":>11}{"forwards s":>12}{"ratio":>8}')
  for name, ts, td, r in rows:
    print(f'{name:<15}{ts:>11.4f}{td:>12.4f}{r:>8.3f}')
  print(f'peak memory, fas, batch {args.memory_batch}, 16 steps (with image decoding): {peak / 2**20:.1f} MiB')
  print(
    json.dumps(
      {
        'overhead_ratio': {k: round(v, 4) for k, v in ratios.items()},
        'steps': t,
        'batch': b,
        'generator_cfg_forward_ms': round(t_gen * 1e3, 3),
        'peak_memory_mib_batch64_steps16': round(peak / 2**20, 2),
        'device': jax.devices()[0].device_kind,
      }
    )
  )


if __name__ == '__main__':
  main()

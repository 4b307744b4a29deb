r"""What does computing the text side once, before the sampling loop, save?

  python benchmarks/text_caching.py [--batch=16] [--steps=16] [--repeats=9]

The sampler takes the model as functions (tcts_jax/sampling/model.py); its `encode_text` runs once per call,
before the `lax.scan`, and returns every layer's cross-attention keys and values. The baseline below is the
same model behind the same protocol with only the text encoder outside the loop and the null-text swap, the
text projection and the keys / values of every layer recomputed at every step (what the sampler did before).
Both run the same strategy on the default configs/shapes.py sizes with random weights; the tokens must be
identical. Reports the median wall time of each (calls interleaved) and the ratio per strategy; the LAST line
is one JSON object.
"""

import argparse
import json
import statistics
import time

import jax
import numpy as np

from tcts_jax.models.generator import generator_forward
from tcts_jax.sampling.model import MaskedGenerator, TokenSelector
from tcts_jax.sampling.sampler import Sampler, sampler_config
from timing import caption_ids, shapes_model


def text_at_every_step(models):
  """The generator and selector with their text side (except the encoder) inside every step."""
  cached = models.masked_generator()

  def logits(params, tokens, text, attention_layer):
    out, self_attention, cross_attention = generator_forward(
      models.generator, params['generator'], tokens, *text, attention_layer
    )
    maps = None if attention_layer is None else dict(self_attention=self_attention, cross_attention=cross_attention)
    return out, maps

  model = MaskedGenerator(
    cached.num_tokens,
    cached.codebook_size,
    cached.mask_id,
    cached.num_layers,
    encode_text=models.encode_text,
    logits=logits,
    decode=cached.decode,
  )
  selector = TokenSelector(
    encode_text=models.encode_text,
    logits=lambda params, tokens, ratio, text: models.selector.apply(
      {'params': params['selector']}, tokens, ratio, *text
    ),
  )
  return model, selector


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--steps', type=int, default=16)
  parser.add_argument('--repeats', type=int, default=9)
  parser.add_argument('--strategies', default='purity,tcts_fas')
  args = parser.parse_args()

  config, models, params = shapes_model()
  ids = caption_ids(models, args.batch)
  variants = {'once': (models.masked_generator(), models.token_selector()), 'every_step': text_at_every_step(models)}
  results = {}
  print(f'device: {jax.devices()[0].device_kind}, batch {args.batch}, {args.steps} steps')
  print(f'{"strategy":<12}{"once s":>10}{"every step s":>14}{"ratio":>8}')
  for name in args.strategies.split(','):
    cfg = sampler_config(config.sampler, strategy=name, steps=args.steps)
    samplers = {k: Sampler(m, cfg, s, decode=False) for k, (m, s) in variants.items()}
    tokens = {k: np.asarray(sampler(params, ids, jax.random.key(1)).tokens) for k, sampler in samplers.items()}
    if not np.array_equal(tokens['once'], tokens['every_step']):
      raise SystemExit(f'{name}: the two variants sampled different tokens')
    # Interleaved (once, every step, once, ...): slow drifts of this machine hit both alike.
    times = {k: [] for k in samplers}
    for _ in range(args.repeats):
      for k, sampler in samplers.items():
        start = time.perf_counter()
        jax.block_until_ready(sampler(params, ids, jax.random.key(1)).tokens)
        times[k].append(time.perf_counter() - start)
    seconds = {k: statistics.median(v) for k, v in times.items()}
    results[name] = {
      'once_s': round(seconds['once'], 4),
      'every_step_s': round(seconds['every_step'], 4),
      'speedup': round(seconds['every_step'] / seconds['once'], 3),
    }
    print(f'{name:<12}{seconds["once"]:>10.4f}{seconds["every_step"]:>14.4f}{results[name]["speedup"]:>8.3f}')
  print(
    json.dumps(
      {'text_caching': results, 'batch': args.batch, 'steps': args.steps, 'device': jax.devices()[0].device_kind}
    )
  )


if __name__ == '__main__':
  main()

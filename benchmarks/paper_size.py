r"""Parameters and FLOPs per training step of the paper-size generators, and what a full run would cost.

  python benchmarks/paper_size.py [--batch=256] [--epochs=200]

The TCTS paper (§4) trains a 310M-parameter generator on MS-COCO and an 83M one on CUB, modified from
VQ-Diffusion's transformer; it conditions on CLIP ViT-B/32 text features (77 tokens of width 512). Here our
own Generator is sized to those counts (VQ-Diffusion's 32 x 32 image tokens and 2,886 codes, from that paper,
not this one), built abstractly (jax.eval_shape: no weights are made), and one generator train step
(corruption, forward, smoothed CE, backward, AdamW) is compiled for CPU without running: FLOPs are XLA's
cost analysis. Device-hours follow for 200 epochs at a stated model-FLOPs utilisation on a stated peak;
both are assumptions, written into the JSON. Nothing is run on an accelerator. JSON last line.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import optax

from tcts_jax.models.generator import Generator
from tcts_jax.training.corruption import corrupt
from tcts_jax.training.stages import smoothed_cross_entropy

GRID, CODES, TEXT_LENGTH, TEXT_WIDTH = 32, 2886, 77, 512
SIZES = {  # chosen so that the parameter counts match the paper's (printed below)
  'coco_310m': dict(width=1024, num_layers=18, num_heads=16, train_images=82_783),
  'cub_83m': dict(width=512, num_layers=19, num_heads=8, train_images=8_855),
}
# Peak dense bf16 FLOP/s per chip (vendor figures) and an MFU that a well-fed transformer of this size reaches.
PEAKS = {'tpu_v4': 275e12, 'tpu_v5e': 197e12, 'h100_sxm': 989e12}
ASSUMED_MFU = 0.4


def generator(size) -> Generator:
  return Generator(CODES, GRID * GRID, size['width'], size['num_layers'], size['num_heads'], TEXT_WIDTH)


def train_step_flops(model: Generator, batch: int) -> tuple[int, float]:
  """(params, FLOPs of one train step at `batch`) from abstract shapes."""
  tokens = jax.ShapeDtypeStruct((batch, GRID * GRID), jnp.int32)
  text = jax.ShapeDtypeStruct((batch, TEXT_LENGTH, TEXT_WIDTH), jnp.float32)
  mask = jax.ShapeDtypeStruct((batch, TEXT_LENGTH), bool)
  drop = jax.ShapeDtypeStruct((batch,), bool)
  params = jax.eval_shape(
    lambda t, x, m, d: model.init(jax.random.key(0), t, x, m, d)['params'], tokens, text, mask, drop
  )
  tx = optax.adamw(1e-4, weight_decay=0.01)

  def step(params, opt_state, codes, text, mask, drop, rng):
    def loss(p):
      inputs, _, _ = corrupt(rng, codes, mask_id=CODES, codebook_size=CODES, corrupt_prob=0.0)
      return jnp.mean(smoothed_cross_entropy(model.apply({'params': p}, inputs, text, mask, drop), codes, 0.1))

    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = jax.eval_shape(tx.init, params)
  rng = jax.eval_shape(lambda: jax.random.key(0))
  lowered = jax.jit(step).lower(params, opt_state, tokens, text, mask, drop, rng)
  flops = lowered.compile().cost_analysis()['flops']
  return sum(x.size for x in jax.tree.leaves(params)), float(flops)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=256, help='global batch (images per step)')
  parser.add_argument('--epochs', type=int, default=200, help="the paper's 200")
  args = parser.parse_args()
  out = {'batch': args.batch, 'epochs': args.epochs, 'assumed_mfu': ASSUMED_MFU, 'peak_bf16_flops': PEAKS}
  for name, size in SIZES.items():
    start = time.perf_counter()
    params, flops = train_step_flops(generator(size), args.batch)
    steps = args.epochs * size['train_images'] / args.batch
    hours = {chip: steps * flops / (ASSUMED_MFU * peak) / 3600 for chip, peak in PEAKS.items()}
    out[name] = {
      'params': params,
      'train_step_tflops': flops / 1e12,
      'flops_per_param_token': flops / (params * args.batch * GRID * GRID),
      'steps': round(steps),
      'device_hours': {k: round(v, 1) for k, v in hours.items()},
      'compile_s': round(time.perf_counter() - start, 1),
    }
    print(f'{name}: {params / 1e6:.1f}M params, {flops / 1e12:.2f} TFLOP per step', flush=True)
  print(json.dumps(out))


if __name__ == '__main__':
  main()

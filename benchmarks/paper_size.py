r"""Parameters and FLOPs per training step of the paper-size generators, and what a full run would cost.

  python benchmarks/paper_size.py [--batch=256] [--epochs=200]

The TCTS paper (§4) trains a 310M-parameter generator on MS-COCO and an 83M one on CUB, modified from
VQ-Diffusion's transformer; it conditions on CLIP ViT-B/32 text features (77 tokens of width 512). Here our
own Generator is sized to those counts (VQ-Diffusion's 32 x 32 image tokens and 2,886 codes, from that paper,
not this one), built abstractly (jax.eval_shape: no weights are made), and one generator train step
(corruption, forward, smoothed CE, backward, AdamW) is compiled for CPU without running: FLOPs are XLA's
cost analysis. Device-hours follow for 200 epochs at a stated model-FLOPs utilisation on a stated peak;
both are assumptions, written into the JSON. JSON last line.

  python benchmarks/paper_size.py --run [--sizes=coco_310m,cub_83m] [--run_batch=16] [--compute_dtype=bfloat16] \
      [--attention=heads_first] [--steps=16] [--repeats=5]

With --run (for a GPU or TPU: `results/device/run.sh`) each size is also run on this machine with random
weights: the train step above at `run_batch` images in `compute_dtype` (the trainer's rule: bf16 copies of the
params, float32 loss) with the generator's layers attending by `attention` (docs/design.md §8), its median time and MFU over this machine's matmul peak in that dtype (measured in the
same run, `timing.matmul_peak_gflops`); and the `uniform` sampler (`steps` steps, tokens only) with that generator on
`configs/shapes.py`'s text encoder, 32 x 32 tokens and 2,886 codes, in `sampler.compute_dtype`: images/s.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import optax
from timing import caption_ids, compiled_flops, matmul_peak_gflops, median_seconds, shapes_model

from tcts_jax.models.generator import Generator
from tcts_jax.models.layers import ATTENTION_IMPLEMENTATIONS
from tcts_jax.sampling.sampler import Sampler, sampler_config
from tcts_jax.training.corruption import corrupt
from tcts_jax.training.stages import smoothed_cross_entropy
from tcts_jax.utils.precision import COMPUTE_DTYPES, cast_floating

GRID, CODES, TEXT_LENGTH, TEXT_WIDTH = 32, 2886, 77, 512
SIZES = {  # chosen so that the parameter counts match the paper's (printed below)
  'coco_310m': dict(width=1024, num_layers=18, num_heads=16, train_images=82_783),
  'cub_83m': dict(width=512, num_layers=19, num_heads=8, train_images=8_855),
}
# Peak dense bf16 FLOP/s per chip (vendor figures) and an MFU that a well-fed transformer of this size reaches.
PEAKS = {'tpu_v4': 275e12, 'tpu_v5e': 197e12, 'h100_sxm': 989e12}
ASSUMED_MFU = 0.4


def generator(size, attention: str = 'heads_first') -> Generator:
  return Generator(CODES, GRID * GRID, size['width'], size['num_layers'], size['num_heads'], TEXT_WIDTH, 4, attention)


def train_inputs(batch: int, concrete: bool = False):
  """(codes, text features, text mask, condition-drop flags) of a batch: shapes only, or random values."""
  shapes = (
    jax.ShapeDtypeStruct((batch, GRID * GRID), jnp.int32),
    jax.ShapeDtypeStruct((batch, TEXT_LENGTH, TEXT_WIDTH), jnp.float32),
    jax.ShapeDtypeStruct((batch, TEXT_LENGTH), bool),
    jax.ShapeDtypeStruct((batch,), bool),
  )
  if not concrete:
    return shapes
  k = jax.random.split(jax.random.key(1), 2)
  return (
    jax.random.randint(k[0], shapes[0].shape, 0, CODES),
    jax.random.normal(k[1], shapes[1].shape),
    jnp.ones(shapes[2].shape, bool),
    jnp.zeros(shapes[3].shape, bool),
  )


# The paper's optimiser (AdamW); its state shapes are all the step needs of it.
OPTIMIZER = optax.adamw(1e-4, weight_decay=0.01)


def make_train_step(model: Generator, compute_dtype: str = 'float32'):
  """One generator train step (corruption, forward, smoothed CE, backward, AdamW), the forward and backward on
  `compute_dtype` copies of the params as the trainer runs them."""
  dtype = COMPUTE_DTYPES[compute_dtype]

  def step(params, opt_state, codes, text, mask, drop, rng):
    def loss(p):
      inputs, _, _ = corrupt(rng, codes, mask_id=CODES, codebook_size=CODES, corrupt_prob=0.0)
      logits = model.apply({'params': cast_floating(p, dtype)}, inputs, text.astype(dtype), mask, drop)
      return jnp.mean(smoothed_cross_entropy(logits.astype(jnp.float32), codes, 0.1))

    grads = jax.grad(loss)(params)
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return jax.jit(step)


def train_step_flops(model: Generator, batch: int) -> tuple[int, float]:
  """(params, FLOPs of one train step at `batch`) from abstract shapes."""
  inputs = train_inputs(batch)
  params = jax.eval_shape(lambda *a: model.init(jax.random.key(0), *a)['params'], *inputs)
  opt_state = jax.eval_shape(OPTIMIZER.init, params)
  rng = jax.eval_shape(lambda: jax.random.key(0))
  flops = compiled_flops(make_train_step(model).lower(params, opt_state, *inputs, rng).compile())
  return sum(x.size for x in jax.tree.leaves(params)), flops


def run_train_step(model: Generator, batch: int, compute_dtype: str, repeats: int) -> tuple[float, float]:
  """(median seconds, XLA's FLOP count) of the train step run at `batch` on this machine."""
  inputs = train_inputs(batch, concrete=True)
  params = jax.jit(lambda *a: model.init(jax.random.key(0), *a)['params'])(*inputs)
  opt_state = jax.jit(OPTIMIZER.init)(params)
  rng = jax.random.key(2)
  compiled = make_train_step(model, compute_dtype).lower(params, opt_state, *inputs, rng).compile()
  return median_seconds(lambda: compiled(params, opt_state, *inputs, rng), repeats), compiled_flops(compiled)


def run_sampler(size: dict, batch: int, compute_dtype: str, attention: str, steps: int, repeats: int) -> dict:
  """The `uniform` sampler with a generator of `size` on 32 x 32 tokens and 2,886 codes: images/s."""
  generator = {f'generator.{k}': size[k] for k in ('width', 'num_layers', 'num_heads')}
  overrides = {**generator, 'generator.attention': attention, 'sampler.compute_dtype': compute_dtype}
  config, models, params = shapes_model(GRID, CODES, overrides)
  cfg = sampler_config(config.sampler, strategy='uniform', steps=steps, forward_rows=0)
  sampler = Sampler(models.masked_generator(), cfg, decode=False)
  ids = caption_ids(models, batch)
  seconds = median_seconds(lambda: sampler(params, ids, jax.random.key(1)).tokens, repeats)
  return {'sampler_images_per_s': round(batch / seconds, 3), 'sampler_steps': steps}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=256, help='global batch (images per step)')
  parser.add_argument('--epochs', type=int, default=200, help="the paper's 200")
  parser.add_argument('--sizes', default=','.join(SIZES), help=f'comma-separated, from {list(SIZES)}')
  parser.add_argument('--run', action='store_true', help='also run each size here: train step and sampler')
  parser.add_argument('--run_batch', type=int, default=16, help='images per train step and sampler call (--run)')
  parser.add_argument('--compute_dtype', default='bfloat16', choices=sorted(COMPUTE_DTYPES), help='(--run)')
  parser.add_argument('--attention', default='heads_first', choices=ATTENTION_IMPLEMENTATIONS, help='(--run)')
  parser.add_argument('--steps', type=int, default=16, help='sampler steps (--run)')
  parser.add_argument('--repeats', type=int, default=5, help='timed calls after warm-up (--run)')
  args = parser.parse_args()
  sizes = args.sizes.split(',')
  if unknown := sorted(set(sizes) - set(SIZES)):
    parser.error(f'unknown size(s) {unknown}; expected some of {list(SIZES)}')
  out = {'batch': args.batch, 'epochs': args.epochs, 'assumed_mfu': ASSUMED_MFU, 'peak_bf16_flops': PEAKS}
  if args.run:
    peak_gflops = matmul_peak_gflops(dtype=COMPUTE_DTYPES[args.compute_dtype])
    out['run'] = {
      'device': jax.devices()[0].device_kind,
      'date': time.strftime('%Y-%m-%d'),
      'compute_dtype': args.compute_dtype,
      'attention': args.attention,
      'matmul_peak_tflop_per_s': round(peak_gflops / 1e3, 2),
    }
    print(f'{out["run"]["device"]}: {args.compute_dtype} matmul peak {peak_gflops / 1e3:.1f} TFLOP/s', flush=True)
  for name in sizes:
    size = SIZES[name]
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
    if args.run:
      seconds, step_flops = run_train_step(
        generator(size, args.attention), args.run_batch, args.compute_dtype, args.repeats
      )
      run = {
        'step_s': round(seconds, 4),
        'tflop_per_step': round(step_flops / 1e12, 3),
        'mfu': round(step_flops / seconds / 1e9 / peak_gflops, 3),
      }
      run.update(run_sampler(size, args.run_batch, args.compute_dtype, args.attention, args.steps, args.repeats))
      out[name]['run'] = {'batch': args.run_batch, **run}
      print(
        f'  batch {args.run_batch}: train step {run["step_s"]:.3f} s ({run["tflop_per_step"]:.2f} TFLOP), MFU '
        f'{run["mfu"]:.2f}; sampler {run["sampler_images_per_s"]:.2f} images/s at {args.steps} steps',
        flush=True,
      )
  print(json.dumps(out))


if __name__ == '__main__':
  main()

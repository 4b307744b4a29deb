r"""How long does `launch/train_shapes.sh` take on this machine? Times one jitted train step per stage.

  python benchmarks/train_steps.py [--repeats=5] [--stages=tokenizer,generator,selector,features] \
      [--config=configs/scenes.py] [--compute_dtype=bfloat16] [--breakdown]

For each stage of the config (default configs/shapes.py): the trainer's own `train_step` (real loss,
optimiser, frozen parts, and for the generator and selector the image codes the trainer encodes once before
its first step), jitted on one device with the stage's batch size, on a batch of the dataset's first test
records (the dataset is built if needed) and random weights (speed does not depend on them). Reports the
median step time after warm-up, the step's FLOPs from XLA's cost analysis, achieved GFLOP/s, the MFU (that rate
over this machine's matmul peak in the compute dtype, measured in the same run), and steps x step time = the
projected stage time. With --breakdown, also where the step spends its time (a profiler trace: the matmuls'
share of the op time and the largest kinds of XLA op, `timing.op_time_shares`). The LAST line printed is one JSON
object.
"""

import argparse
import functools
import json

import jax
import numpy as np
from flax.training import train_state
from timing import compiled_flops, matmul_peak_gflops, median_seconds, op_time_shares

from tcts_jax.api import load_config
from tcts_jax.data import get_dataset, pipeline
from tcts_jax.models import build_models, init_params
from tcts_jax.training.stages import image_tokens, make_stage
from tcts_jax.training.trainer import make_optimizer, train_step
from tcts_jax.utils.compilation import jit_one_off
from tcts_jax.utils.precision import COMPUTE_DTYPES

# What each stage holds frozen (the rest of init_params is unused by it).
FROZEN_PARTS = {
  'tokenizer': (),
  'generator': ('tokenizer',),
  'selector': ('tokenizer', 'text', 'generator'),
  'features': (),
}


def synthetic_batch(config, dataset, models, stage, frozen):
  """The trainer's batch layout from the dataset's first test records; with the image codes the trainer
  encodes once up front for `needs_codes` stages."""
  source = dataset.source('test')
  examples = [
    pipeline.example_to_numpy(source[i], dataset.fields, models.text_tokenizer.encode if stage.needs_text else None)
    for i in range(config.train.batch_size)
  ]
  batch = pipeline.collate(examples)
  batch = {k: v for k, v in batch.items() if v.dtype != object}
  if stage.needs_codes:
    batch['codes'] = np.asarray(image_tokens(models, frozen['tokenizer'], batch['image']))
  return batch


def time_stage(config_path, name, repeats, compute_dtype, peak_gflops, breakdown=False):
  config = load_config(f'{config_path}:{name}')
  dataset = get_dataset(config.data)
  models = build_models(config, dataset.vocabulary())
  stage = make_stage(config, models)
  rng = jax.random.key(0)
  all_params = jit_one_off(lambda r: init_params(models, config.data.image_size, r))(rng)
  frozen = {part: all_params[part] for part in FROZEN_PARTS[name]}
  batch = synthetic_batch(config, dataset, models, stage, frozen)
  state = train_state.TrainState.create(
    apply_fn=None, params=jit_one_off(stage.init)(rng, batch), tx=make_optimizer(config.train)
  )
  step = jax.jit(functools.partial(train_step, stage, compute_dtype=compute_dtype))
  flops = compiled_flops(step.lower(state, frozen, batch, rng).compile())
  seconds = median_seconds(lambda: step(state, frozen, batch, rng)[1], repeats)
  shares = {'op_time_shares': op_time_shares(lambda: step(state, frozen, batch, rng)[1])} if breakdown else {}
  return {
    'step_s': round(seconds, 4),
    'steps': config.train.num_steps,
    'batch': config.train.batch_size,
    'gflop_per_step': round(flops / 1e9, 2),
    'gflop_per_s': round(flops / 1e9 / seconds, 1),
    'mfu': round(flops / 1e9 / seconds / peak_gflops, 3),
    'projected_min': round(seconds * config.train.num_steps / 60, 1),
    **shares,
  }


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--stages', default='tokenizer,generator,selector,features')
  parser.add_argument('--config', default='configs/shapes.py')
  parser.add_argument('--compute_dtype', default='float32', choices=sorted(COMPUTE_DTYPES))
  parser.add_argument('--breakdown', action='store_true', help="print each step's time by kind of XLA op")
  args = parser.parse_args()
  stages = [s for s in args.stages.split(',') if s]
  unknown = sorted(set(stages) - set(FROZEN_PARTS))
  if unknown:
    parser.error(f'unknown stage(s) {unknown}; expected some of {sorted(FROZEN_PARTS)}')

  results = {}
  peak = matmul_peak_gflops(dtype=COMPUTE_DTYPES[args.compute_dtype])
  print(f'device: {jax.devices()[0].device_kind}; {args.compute_dtype} matmul peak {peak:.1f} GFLOP/s')
  print(f'{"stage":<11}{"step s":>8}{"steps":>7}{"GFLOP":>8}{"GFLOP/s":>9}{"MFU":>6}{"min":>7}')
  for name in stages:
    r = results[name] = time_stage(args.config, name, args.repeats, args.compute_dtype, peak, args.breakdown)
    print(
      f'{name:<11}{r["step_s"]:>8.3f}{r["steps"]:>7}{r["gflop_per_step"]:>8.1f}{r["gflop_per_s"]:>9.1f}'
      f'{r["mfu"]:>6.2f}{r["projected_min"]:>7.1f}',
      flush=True,
    )
    if args.breakdown:
      print('  op time: ' + ', '.join(f'{k} {v:.0%}' for k, v in r['op_time_shares'].items()), flush=True)
  total = round(sum(r['projected_min'] for r in results.values()), 1)
  print(f'projected training time of these stages: {total} min (train steps only)')
  print(
    json.dumps(
      {
        'stages': results,
        'projected_total_min': total,
        'compute_dtype': args.compute_dtype,
        'matmul_peak_gflop_per_s': round(peak, 1),
        'device': jax.devices()[0].device_kind,
      }
    )
  )


if __name__ == '__main__':
  main()

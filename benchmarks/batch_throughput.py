r"""Does sampling throughput per image hold up as the batch grows? flax's attention layout against heads-first,
and forwards in row chunks (`sampler.forward_rows`).

  python benchmarks/batch_throughput.py [--grids=8,16] [--batches=1,8,32] [--steps=4] [--repeats=3] \
      [--forward_rows=16] [--compute_dtype=float32]

Model: the default `configs/shapes.py` sizes (generator width 128, 4 layers, 4 heads) on a `grid` x `grid`
canvas, random weights. For each grid and batch, after warm-up, the median time of
  - the `uniform` sampler (tokens only) over `steps` steps: milliseconds per image per step;
  - one CFG generator forward (2 x batch rows): its GFLOP/s (XLA cost analysis) as a fraction of this
    machine's fp32 matmul peak (a 2048^3 matmul, measured in the same run);
for the layouts `flax`, flax's own einsums ('...qhd,...khd->...hqk'), and `heads_first`, the (..., heads, N, d)
matmuls `models.layers.Attention` hands to flax (`layers.ATTENTION_EINSUMS`); and, with heads-first, the sampler
with `forward_rows` rows per forward (`rows_<n>`; batches of at most forward_rows / 2 images are not chunked), and
that sampler without guidance (`unguided`: guidance_scale 0 runs only the B conditional rows). As a bound on
the forward's share of the peak at this size, the share that the forward's own MLP matmul reaches alone
(`mlp_matmul_fraction_of_peak`: (2 x batch x tokens, width) by (width, mlp_ratio x width), the shape with the
most FLOPs per call). With --compute_dtype=bfloat16 the sampler, the forward and the matmuls run in bf16
(`sampler.compute_dtype`) and the peak is bf16's. The LAST line printed is one JSON object.
"""

import argparse
import json

import jax
import jax.numpy as jnp

from tcts_jax.models import layers
from tcts_jax.sampling.sampler import Sampler, sampler_config
from tcts_jax.utils.precision import COMPUTE_DTYPES, cast_floating
from timing import caption_ids, compiled_flops, matmul_gflops, matmul_peak_gflops, median_seconds, shapes_model

LAYOUTS = {'flax': (None, None), 'heads_first': layers.ATTENTION_EINSUMS}


def measure(grid: int, batch: int, args, peak: float) -> dict:
  config, models, params = shapes_model(grid, overrides={'sampler.compute_dtype': args.compute_dtype})
  model = models.masked_generator()
  ids = caption_ids(models, batch)
  # The forward timed alone runs on the params the sampler computes with (bf16 copies with --compute_dtype).
  forward_params = cast_floating(params, COMPUTE_DTYPES[args.compute_dtype])
  text = jax.jit(lambda p, i: model.encode_text(p, i, None))(forward_params, ids)
  canvas = jnp.full((2 * batch, models.num_tokens), models.mask_id, jnp.int32)
  row = {'grid': grid, 'batch': batch}
  for name, einsums in LAYOUTS.items():
    layers.ATTENTION_EINSUMS = einsums  # read when a function is traced: each layout gets programs of its own
    forward = jax.jit(lambda p, tokens, text: model.logits(p, tokens, text, None)[0])
    flops = compiled_flops(forward.lower(forward_params, canvas, text).compile())
    forward_seconds = median_seconds(lambda: forward(forward_params, canvas, text), args.repeats)
    sampler = Sampler(model, sampler_config(config.sampler, strategy='uniform', steps=args.steps), decode=False)
    seconds = median_seconds(lambda: sampler(params, ids, jax.random.key(1)).tokens, args.repeats)
    row[f'{name}_ms_per_image_step'] = round(seconds / args.steps / batch * 1e3, 3)
    row[f'{name}_forward_fraction_of_peak'] = round(flops / forward_seconds / 1e9 / peak, 3)
  layers.ATTENTION_EINSUMS = LAYOUTS['heads_first']
  g = config.generator
  rows, dtype = 2 * batch * models.num_tokens, COMPUTE_DTYPES[args.compute_dtype]
  mlp_gflops = matmul_gflops(rows, g.width, g.mlp_ratio * g.width, args.repeats, dtype)
  row['mlp_matmul_fraction_of_peak'] = round(mlp_gflops / peak, 3)
  cfg = sampler_config(config.sampler, strategy='uniform', steps=args.steps, forward_rows=args.forward_rows)
  sampler = Sampler(model, cfg, decode=False)
  seconds = median_seconds(lambda: sampler(params, ids, jax.random.key(1)).tokens, args.repeats)
  row[f'rows_{args.forward_rows}_ms_per_image_step'] = round(seconds / args.steps / batch * 1e3, 3)
  sampler = Sampler(model, sampler_config(cfg, guidance_scale=0.0), decode=False)
  seconds = median_seconds(lambda: sampler(params, ids, jax.random.key(1)).tokens, args.repeats)
  row['unguided_ms_per_image_step'] = round(seconds / args.steps / batch * 1e3, 3)
  print(
    f'  {grid}x{grid} batch {batch:3d}: ms per image-step flax {row["flax_ms_per_image_step"]:8.2f}  heads-first '
    f'{row["heads_first_ms_per_image_step"]:8.2f}  heads-first, {args.forward_rows} rows per forward '
    f'{row[f"rows_{args.forward_rows}_ms_per_image_step"]:8.2f}  the same unguided '
    f'{row["unguided_ms_per_image_step"]:8.2f};  CFG forward / peak flax '
    f'{row["flax_forward_fraction_of_peak"]:.2f}  heads-first {row["heads_first_forward_fraction_of_peak"]:.2f};  '
    f'its MLP matmul alone {row["mlp_matmul_fraction_of_peak"]:.2f}',
    flush=True,
  )
  return row


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--grids', default='8,16')
  parser.add_argument('--batches', default='1,8,32')
  parser.add_argument('--steps', type=int, default=4)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--forward_rows', type=int, default=16)
  parser.add_argument(
    '--compute_dtype', default='float32', choices=sorted(COMPUTE_DTYPES), help='sampler.compute_dtype'
  )
  args = parser.parse_args()
  peak = matmul_peak_gflops(dtype=COMPUTE_DTYPES[args.compute_dtype])
  print(f'device: {jax.devices()[0].device_kind}, {args.compute_dtype} matmul peak {peak:.0f} GFLOP/s', flush=True)
  rows = [measure(int(g), int(b), args, peak) for g in args.grids.split(',') for b in args.batches.split(',')]
  out = {'device': jax.devices()[0].device_kind, 'compute_dtype': args.compute_dtype}
  print(json.dumps({**out, 'matmul_peak_gflops': round(peak, 1), 'configs': rows}))


if __name__ == '__main__':
  main()

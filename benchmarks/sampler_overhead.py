r"""How much does the sampling logic cost on top of the network forwards it must run anyway?

  python benchmarks/sampler_overhead.py [--batch=16] [--steps=16] [--repeats=3] [--grids=8,16] \
      [--codebooks=1024,8192] [--strategies=uniform,purity,random_revoke,fas,tcts,tcts_fas]

Model: the default `configs/shapes.py` sizes (generator width 128, 4 layers; selector from its config
section) on a `grid` x `grid` token canvas (image side 4 x grid) and a codebook of the given size, random
weights (speed does not depend on them). For each grid, codebook and strategy, after warm-up, the median of
`repeats` runs of
  (a) the bound: ONE compiled program that encodes the text once and then runs a `lax.scan` of T steps doing
      only what the sampler cannot avoid: the CFG generator forward (cond + uncond in one batch; with the
      attention maps when the strategy reads them) and the selector forward when the strategy uses one. Each
      step's canvas depends on the previous step's logits through a cheap comparison, so XLA cannot hoist
      the forwards out of the loop;
  (a') the same with the generator's head on the B conditional rows only: the forward the sampler itself runs,
      since it guides the features before the affine head (docs/design.md §2.3), not the 2B rows of logits;
  (b) the full T-step sampler with the same shapes (tokens only: decoding is the same for every strategy),
and overhead = (b) / (a) (the issue's definition: below 1 when guiding the features saves more than the
sampling logic costs) and (b) / (a') (what the sampling logic alone costs). Also per configuration: the FLOPs of one CFG generator forward (XLA cost analysis),
its achieved GFLOP/s and that as a fraction of this machine's fp32 matmul peak, measured in the same run
(a 2048^3 matmul), and the compiled FAS sampler's peak memory with image decoding (XLA memory analysis:
arguments + outputs + temporaries). The LAST line printed is one JSON object.
"""

import argparse
import json

import jax
import jax.numpy as jnp

from tcts_jax.sampling.model import guided_selector_logits
from tcts_jax.sampling.sampler import Sampler, sampler_config
from timing import caption_ids, compiled_flops, matmul_peak_gflops, median_seconds, shapes_model


def forwards_only(
  model, selector, steps: int, attention_layer, use_selector: bool, selector_guidance: float, head_rows: str
):
  """The bound (a): text once, then `steps` CFG generator (+ selector) forwards in one lax.scan. head_rows 'all':
  the CFG forward (the head on all 2B rows); 'conditional': the generator's features for 2B rows and the head on
  B rows, the forward a sampler that guides the features runs (docs/design.md §2.3)."""

  def run(params, ids):
    b = ids.shape[0]
    text = model.encode_text(params, ids, None)
    selector_text = selector.encode_text(params, ids, None) if use_selector else None

    def step(tokens, _):
      if head_rows == 'all':
        logits, _ = model.logits(params, tokens, text, attention_layer)
      else:
        features, _ = model.features(params, tokens, text, attention_layer)
        logits = jnp.concatenate([model.head(params, features[:b])] * 2)
      tokens = jnp.where(logits[..., 0] > logits[..., 1], tokens, model.mask_id)  # depends on this step
      if use_selector:
        ratio = jnp.full((b,), 0.5)
        scores = guided_selector_logits(
          selector, params, tokens[:b] % model.mask_id, ratio, selector_text, selector_guidance
        )
        tokens = tokens.at[:b].set(jnp.where(scores > 0, tokens[:b], model.mask_id))
      return tokens, None

    canvas = jnp.full((2 * b, model.num_tokens), model.mask_id, jnp.int32)
    return jax.lax.scan(step, canvas, None, length=steps)[0]

  return jax.jit(run)


def measure(grid: int, codebook: int, strategies, args, peak: float) -> dict:
  config, models, params = shapes_model(grid, codebook)
  model, selector = models.masked_generator(), models.token_selector()
  b, t = args.batch, args.steps
  ids = caption_ids(models, b)

  text = jax.jit(lambda p, i: model.encode_text(p, i, None))(params, ids)
  canvas = jnp.full((2 * b, models.num_tokens), models.mask_id, jnp.int32)
  cfg_forward = jax.jit(lambda p, tokens, text: model.logits(p, tokens, text, None)[0])
  forward_flops = compiled_flops(cfg_forward.lower(params, canvas, text).compile())
  forward_seconds = median_seconds(lambda: cfg_forward(params, canvas, text), args.repeats)

  overhead, own_overhead = {}, {}
  for name in strategies:
    cfg = sampler_config(config.sampler, strategy=name, steps=t)
    sampler = Sampler(model, cfg, selector, decode=False)
    reference = jnp.zeros((b, models.num_tokens), jnp.int32) if sampler.needs_reference else None
    t_sampler = median_seconds(
      lambda: sampler(params, ids, jax.random.key(1), reference_tokens=reference).tokens, args.repeats
    )
    layer = cfg.fas_layer if sampler.needs_attention else None
    bounds = {
      rows: forwards_only(model, selector, t, layer, sampler.needs_selector, sampler.selector_guidance, rows)
      for rows in ('all', 'conditional')
    }
    t_bound = {rows: median_seconds(lambda: bound(params, ids), args.repeats) for rows, bound in bounds.items()}
    overhead[name] = t_sampler / t_bound['all']
    own_overhead[name] = t_sampler / t_bound['conditional']
    print(
      f'  {grid}x{grid} codebook {codebook:5d} {name:<14} sampler {t_sampler:8.3f} s  CFG forwards '
      f'{t_bound["all"]:8.3f} s  overhead {overhead[name]:.3f}  forwards with the head on B rows '
      f'{t_bound["conditional"]:8.3f} s  overhead {own_overhead[name]:.3f}',
      flush=True,
    )
  achieved = forward_flops / forward_seconds / 1e9
  cfg = sampler_config(config.sampler, strategy='fas', steps=t)
  memory = Sampler(model, cfg, selector).lower(params, ids, jax.random.key(0)).compile().memory_analysis()
  peak_bytes = (
    memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes - memory.alias_size_in_bytes
  )
  return {
    'grid': grid,
    'codebook': codebook,
    'overhead': {k: round(v, 4) for k, v in overhead.items()},
    'overhead_vs_forwards_with_head_on_b_rows': {k: round(v, 4) for k, v in own_overhead.items()},
    'cfg_forward_gflop': round(forward_flops / 1e9, 3),
    'cfg_forward_ms': round(forward_seconds * 1e3, 2),
    'achieved_gflops': round(achieved, 1),
    'fraction_of_matmul_peak': round(achieved / peak, 3),
    'peak_memory_mib_fas_with_decoding': round(peak_bytes / 2**20, 2),
  }


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--steps', type=int, default=16)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--grids', default='8,16')
  parser.add_argument('--codebooks', default='1024,8192')
  parser.add_argument('--strategies', default='uniform,purity,random_revoke,fas,tcts,tcts_fas')
  args = parser.parse_args()
  strategies = args.strategies.split(',')
  peak = matmul_peak_gflops()
  print(
    f'device: {jax.devices()[0].device_kind}, fp32 matmul peak {peak:.0f} GFLOP/s, batch {args.batch}, '
    f'{args.steps} steps',
    flush=True,
  )
  rows = [
    measure(int(grid), int(codebook), strategies, args, peak)
    for grid in args.grids.split(',')
    for codebook in args.codebooks.split(',')
  ]
  print(
    json.dumps(
      {
        'device': jax.devices()[0].device_kind,
        'matmul_peak_gflops': round(peak, 1),
        'batch': args.batch,
        'steps': args.steps,
        'configs': rows,
      }
    )
  )


if __name__ == '__main__':
  main()

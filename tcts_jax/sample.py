r"""Generates images from prompts and writes a captioned PNG grid (the main job).

  python -m tcts_jax.sample --config=configs/shapes.py --prompt="a large red circle in the middle" --out=grid.png

Loads the shipped weights (config.weights) unless --weights is given. Sampler settings come from the
config: --config.sampler.strategy=random_revoke --config.sampler.steps=16 ...
With --trajectory, also writes one strip per prompt (<out>_trajectory_<i>.png), one numbered column per step:
x̂, the kept tokens, the FAS high-frequency map and, for tcts* strategies, the selector's doubt; under each
step the sampler's diagnostics: tokens newly kept (+), visible tokens revoked (-) and churn.

High resolution (docs/design.md §16): --grid=16 samples a 16 x 16 token canvas (twice the shipped model's 8 x 8) in
overlapping windows of the trained grid every --window_stride tokens; --high_res=upsample instead samples the
trained grid, upsamples its tokens through the codebook and refines the canvas in windows (the selector's least
aligned 60% re-masked):

  python -m tcts_jax.sample --prompt="a large red circle in the middle" --grid=16 --out=large.png
  python -m tcts_jax.sample --prompt="a large red circle in the middle" --grid=16 --high_res=upsample --out=large.png

Muse's super-resolution stage (docs/design.md §17): a super_res config samples the base model (weights/shapes),
then that stage (weights/shapes_x2), 64 px:

  python -m tcts_jax.sample --config=configs/shapes.py:super_res --prompt="a large red circle in the middle" --out=x2.png
"""

import time

import jax
from absl import flags

from tcts_jax import editing
from tcts_jax.api import SuperResolution, TextToImage
from tcts_jax.utils import visualize
from tcts_jax.utils.cli import define_config_flag, run_main
from tcts_jax.utils.files import png_output

FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS.prompt:
    raise ValueError('give at least one --prompt')
  out = png_output(FLAGS.out)
  if FLAGS.config.stage == 'super_res':
    return sample_super_res(out)
  t2i = TextToImage.load(FLAGS.config, FLAGS.weights)
  grid = FLAGS.grid or t2i.grid_size
  if FLAGS.high_res == 'upsample' and (FLAGS.trajectory or grid == t2i.grid_size):
    raise ValueError('--high_res=upsample needs a --grid larger than the model grid, and no --trajectory')
  canvas = t2i if grid == t2i.grid_size else t2i.at_grid(grid, FLAGS.window_stride)
  start = time.perf_counter()
  gen = (t2i if FLAGS.high_res == 'upsample' else canvas).generate(
    FLAGS.prompt,
    FLAGS.num_samples,
    FLAGS.seed,
    trajectory=FLAGS.trajectory,
    negative_prompt=FLAGS.negative_prompt,
    diagnostics=FLAGS.trajectory,
  )
  if FLAGS.high_res == 'upsample':
    chooser = 'selector' if editing.has_selector(t2i) else 'random'
    refined = editing.refine_upsampled(
      t2i, gen.tokens, gen.prompts, grid, jax.random.key(FLAGS.seed), FLAGS.window_stride, chooser=chooser
    )
    gen.images, gen.tokens = refined.images, refined.tokens
  seconds = time.perf_counter() - start
  visualize.save_png(out, visualize.caption_grid(gen.images, gen.prompts, cols=FLAGS.num_samples))
  print(
    f'wrote {out} ({len(gen.images)} image{"s" * (len(gen.images) > 1)}, {FLAGS.config.sampler.strategy}, '
    f'{FLAGS.config.sampler.steps} steps, {seconds:.1f} s incl. compilation)'
  )
  if FLAGS.trajectory:
    g = canvas.grid_size
    for i, prompt in enumerate(FLAGS.prompt):
      j = i * FLAGS.num_samples  # the first sample of each prompt
      traj = gen.trajectory
      selector = traj['selector_logits'][:, j] if 'selector_logits' in traj else None
      steps = {k: gen.diagnostics[k][:, j] for k in ('decided', 'revoked', 'churn')}
      strip = visualize.trajectory_strip(
        traj['images'][:, j],
        traj['kept'][:, j],
        traj['high_freq'][:, j],
        g,
        prompt,
        selector_logits=selector,
        diagnostics=steps,
      )
      path = out.with_name(f'{out.stem}_trajectory_{i}.png')
      visualize.save_png(path, strip)
      print(f'wrote {path}')


def sample_super_res(out) -> None:
  """Muse's two stages: the base model (super_res.base_config) at its grid, then the super-resolution stage."""
  if FLAGS.grid or FLAGS.trajectory or FLAGS.negative_prompt:
    raise ValueError('a super_res config takes no --grid, --trajectory or --negative_prompt')
  t2x = SuperResolution.load(FLAGS.config, FLAGS.weights)
  start = time.perf_counter()
  gen = t2x.generate(FLAGS.prompt, FLAGS.num_samples, FLAGS.seed)
  seconds = time.perf_counter() - start
  visualize.save_png(out, visualize.caption_grid(gen.images, gen.prompts, cols=FLAGS.num_samples))
  print(f'wrote {out} ({len(gen.images)} images, base then super-resolution, {seconds:.1f} s incl. compilation)')


if __name__ == '__main__':
  define_config_flag('config', 'configs/shapes.py', 'Config file.')
  flags.DEFINE_multi_string('prompt', None, 'A prompt; repeat the flag for several.')
  flags.DEFINE_integer('num_samples', 4, 'Images per prompt.')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  flags.DEFINE_string('out', 'samples.png', 'Output PNG path.')
  flags.DEFINE_string('weights', None, 'Weights directory (default: config.weights, the shipped model).')
  flags.DEFINE_string('negative_prompt', None, 'Text for the unconditional branch of guidance.')
  flags.DEFINE_bool('trajectory', False, 'Also write a per-step trajectory strip per prompt.')
  flags.DEFINE_integer(
    'grid', None, 'Tokens per side of the canvas (default: the model grid); larger = high resolution.'
  )
  flags.DEFINE_integer('window_stride', None, 'High resolution: tokens between windows (default: half the model grid).')
  flags.DEFINE_enum(
    'high_res',
    'windows',
    ['windows', 'upsample'],
    'High resolution: sample the canvas in windows, or upsample + refine.',
  )
  run_main(main)

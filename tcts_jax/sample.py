r"""Generates images from prompts and writes a captioned PNG grid (the main job).

  python -m tcts_jax.sample --config=configs/shapes.py --prompt="a large red circle in the middle" --out=grid.png

Loads the shipped weights (config.weights) unless --weights is given. Sampler settings come from the
config: --config.sampler.strategy=random_revoke --config.sampler.steps=16 ...
With --trajectory, also writes one strip per prompt (<out>_trajectory_<i>.png), one numbered column per step:
x̂, the kept tokens, the FAS high-frequency map and, for tcts* strategies, the selector's doubt; under each
step the sampler's diagnostics: tokens newly kept (+), visible tokens revoked (-) and churn.
"""

import time

from absl import flags

from tcts_jax.api import TextToImage
from tcts_jax.utils import visualize
from tcts_jax.utils.cli import define_config_flag, run_main
from tcts_jax.utils.files import png_output

FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS.prompt:
    raise ValueError('give at least one --prompt')
  out = png_output(FLAGS.out)
  t2i = TextToImage.load(FLAGS.config, FLAGS.weights)
  start = time.perf_counter()
  gen = t2i.generate(
    FLAGS.prompt,
    FLAGS.num_samples,
    FLAGS.seed,
    trajectory=FLAGS.trajectory,
    negative_prompt=FLAGS.negative_prompt,
    diagnostics=FLAGS.trajectory,
  )
  seconds = time.perf_counter() - start
  visualize.save_png(out, visualize.caption_grid(gen.images, gen.prompts, cols=FLAGS.num_samples))
  print(
    f'wrote {out} ({len(gen.images)} image{"s" * (len(gen.images) > 1)}, {FLAGS.config.sampler.strategy}, '
    f'{FLAGS.config.sampler.steps} steps, {seconds:.1f} s incl. compilation)'
  )
  if FLAGS.trajectory:
    g = t2i.models.grid_size
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


if __name__ == '__main__':
  define_config_flag('config', 'configs/shapes.py', 'Config file.')
  flags.DEFINE_multi_string('prompt', None, 'A prompt; repeat the flag for several.')
  flags.DEFINE_integer('num_samples', 4, 'Images per prompt.')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  flags.DEFINE_string('out', 'samples.png', 'Output PNG path.')
  flags.DEFINE_string('weights', None, 'Weights directory (default: config.weights, the shipped model).')
  flags.DEFINE_string('negative_prompt', None, 'Text for the unconditional branch of guidance.')
  flags.DEFINE_bool('trajectory', False, 'Also write a per-step trajectory strip per prompt.')
  run_main(main)

r"""Refines an image with TCTS (paper §4.2) and writes before | re-masked tokens | after.

  python -m tcts_jax.refine --config=configs/shapes.py --image=in.png --prompt="a large red circle in the middle" \
      --out=refined.png [--mode=revision|masked] [--chooser=selector|random] [--rounds=4] [--weights=DIR]

revision: --rounds rounds, each re-masking --fraction of the tokens (default 0.25) chosen by the selector
(least aligned first) or at random, regenerated with --strategy in --steps steps. masked: re-mask the
--fraction (default 0.6) lowest-scoring tokens at once and regenerate them with uniform sampling.
The image is tokenized with the VQ tokenizer (converted to RGB / resized to the model's size if needed,
which is printed). Sampler settings not set here come from the config (--config.sampler.guidance_scale=...).
"""

import time

import jax
from absl import flags

from tcts_jax import editing
from tcts_jax.utils.cli import define_config_flag, run_main

FLAGS = flags.FLAGS


def main(argv):
  del argv
  image, t2i, out = editing.open_job(FLAGS.config, FLAGS.image, FLAGS.prompt, FLAGS.out, FLAGS.weights, FLAGS.selector)
  if FLAGS.chooser == 'selector':
    editing.require_selector(t2i)
  for note in image.notes:
    print(f'note: {note}')
  revision = FLAGS.mode == 'revision'
  settings = dict(
    fraction=FLAGS.fraction if FLAGS.fraction is not None else (0.25 if revision else 0.6),
    noise=FLAGS.noise if FLAGS.noise is not None else (1.0 if revision else 0.0),
    steps=FLAGS.steps if FLAGS.steps is not None else (4 if revision else 8),
    chooser=FLAGS.chooser,
    strategy=FLAGS.strategy,
  )
  start = time.perf_counter()
  tokens = t2i.tokenize_images(image.pixels[None])
  rng = jax.random.key(FLAGS.seed)
  if revision:
    result = editing.refine_revision(t2i, tokens, FLAGS.prompt, rng, rounds=FLAGS.rounds, **settings)
    what = f'{FLAGS.rounds} revision rounds x {settings["fraction"]:g}'
  else:
    result = editing.refine_masked(t2i, tokens, FLAGS.prompt, rng, **settings)
    what = f'masked {settings["fraction"]:g}'
  seconds = time.perf_counter() - start
  n, changed = editing.save_comparison(out, t2i, tokens, result, f'{what} ({FLAGS.chooser})', FLAGS.prompt)
  print(
    f'wrote {out} ({what}, chooser {FLAGS.chooser}, {n} tokens re-masked, {changed} changed, '
    f'{seconds:.1f} s incl. compilation)'
  )


if __name__ == '__main__':
  define_config_flag('config', 'configs/shapes.py', 'Config file.')
  flags.DEFINE_string('image', None, 'Input image (PNG, JPEG, ...).')
  flags.DEFINE_string('prompt', None, 'The prompt the image should match.')
  flags.DEFINE_string('out', 'refined.png', 'Output PNG path.')
  flags.DEFINE_enum('mode', 'revision', ['revision', 'masked'], 'Refinement (a) revision rounds or (b) masking.')
  flags.DEFINE_enum('chooser', 'selector', list(editing.CHOOSERS), 'Who picks the tokens to re-mask.')
  flags.DEFINE_integer('rounds', 4, 'Revision rounds (mode=revision).')
  flags.DEFINE_float('fraction', None, 'Fraction of tokens re-masked (per round); default 0.25 revision, 0.6 masked.')
  flags.DEFINE_float(
    'noise',
    None,
    'Gumbel noise of the selector choice; default 1.0 annealed over rounds '
    '(revision), 0 (masked: exactly the lowest-scoring tokens).',
  )
  flags.DEFINE_string('strategy', 'uniform', 'Sampling strategy that regenerates the re-masked tokens.')
  flags.DEFINE_integer('steps', None, 'Regeneration steps (per round); default 4 revision, 8 masked.')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  flags.DEFINE_string('weights', None, 'Weights directory (default: config.weights, the shipped model).')
  flags.DEFINE_string('selector', None, "Selector weights or workdir overriding the weights dir's selector.")
  run_main(main)

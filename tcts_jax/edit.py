r"""Mask-free editing (paper §4.3) and Muse-style in/outpainting; writes before | re-masked tokens | after.

  python -m tcts_jax.edit --config=configs/shapes.py --image=in.png --prompt="a large blue circle in the middle" \
      --word=blue --out=edited.png [--noise=0.25 --steps=10]
  python -m tcts_jax.edit --config=configs/shapes.py --image=in.png --prompt="..." --inpaint=0,0,16,16 --out=out.png
  python -m tcts_jax.edit --config=configs/shapes.py --image=in.png --prompt="..." --outpaint=8,8,24,24 --out=out.png

Editing re-masks up to --noise of the tokens, drawn with weights = the generator's cross-attention to
--word in the NEW prompt times the selector's score map (the attention alone without selector weights;
printed), and regenerates them under the new prompt. --inpaint regenerates the tokens overlapping the
pixel rectangle x0,y0,x1,y1 (x1, y1 exclusive, pixels of the input image) and keeps the rest; --outpaint
keeps the rectangle and regenerates the rest. Other sampler settings come from --config.sampler.*.
"""

import time

import jax
from absl import flags

from tcts_jax import editing
from tcts_jax.utils.cli import define_config_flag, run_main

FLAGS = flags.FLAGS


def main(argv):
  del argv
  modes = [name for name in ('word', 'inpaint', 'outpaint') if getattr(FLAGS, name) is not None]
  if len(modes) != 1:
    raise ValueError(
      'give exactly one of --word (mask-free editing), --inpaint or --outpaint'
      + (f' (got {", ".join("--" + m for m in modes)})' if modes else '')
    )
  image, t2i, out = editing.open_job(FLAGS.config, FLAGS.image, FLAGS.prompt, FLAGS.out, FLAGS.weights, FLAGS.selector)
  region = None
  if FLAGS.word is not None:
    t2i.word_mask(FLAGS.prompt, FLAGS.word)  # fail fast, naming the word
  else:
    rect = editing.parse_rect(FLAGS.inpaint or FLAGS.outpaint)
    region = editing.rect_to_token_mask(rect, t2i.models.grid_size, *image.original_size)
  for note in image.notes:
    print(f'note: {note}')
  start = time.perf_counter()
  tokens = t2i.tokenize_images(image.pixels[None])
  rng = jax.random.key(FLAGS.seed)
  if FLAGS.word is not None:
    result = editing.edit(
      t2i,
      tokens,
      FLAGS.prompt,
      FLAGS.word,
      rng,
      noise=FLAGS.noise,
      steps=10 if FLAGS.steps is None else FLAGS.steps,
      strategy=FLAGS.strategy or 'uniform',
      layer=FLAGS.layer,
      sharpness=FLAGS.sharpness,
      use_selector=FLAGS.use_selector,
    )
    what = f'edit {FLAGS.word!r}'
  else:
    result = editing.inpaint(
      t2i,
      tokens,
      FLAGS.prompt,
      region,
      rng,
      outpaint=FLAGS.outpaint is not None,
      strategy=FLAGS.strategy,
      steps=FLAGS.steps,
    )
    what = 'outpaint' if FLAGS.outpaint is not None else 'inpaint'
  seconds = time.perf_counter() - start
  for note in result.notes:
    print(f'note: {note}')
  n, changed = editing.save_comparison(out, t2i, tokens, result, what, FLAGS.prompt)
  print(f'wrote {out} ({what}, {n} tokens re-masked, {changed} changed, {seconds:.1f} s incl. compilation)')


if __name__ == '__main__':
  define_config_flag('config', 'configs/shapes.py', 'Config file.')
  flags.DEFINE_string('image', None, 'Input image (PNG, JPEG, ...).')
  flags.DEFINE_string('prompt', None, 'The NEW prompt.')
  flags.DEFINE_string('word', None, 'Editing: the word of the new prompt to change (e.g. "blue").')
  flags.DEFINE_string('inpaint', None, 'Inpainting: regenerate inside the pixel rectangle x0,y0,x1,y1.')
  flags.DEFINE_string('outpaint', None, 'Outpainting: regenerate outside the pixel rectangle x0,y0,x1,y1.')
  flags.DEFINE_string('out', 'edited.png', 'Output PNG path.')
  flags.DEFINE_float('noise', 0.25, 'Editing: fraction of the tokens re-masked.')
  flags.DEFINE_integer(
    'steps', None, 'Regeneration steps; default 10 (editing) or config.sampler.steps (in/outpainting).'
  )
  flags.DEFINE_string('strategy', None, 'Regeneration strategy; default uniform (editing) or config.sampler.strategy.')
  flags.DEFINE_integer('layer', None, 'Editing: generator layer of the cross-attention map (default: mean of all).')
  flags.DEFINE_float('sharpness', 4.0, 'Editing: exponent on the attention map (> 1 concentrates the edit).')
  flags.DEFINE_bool('use_selector', True, 'Editing: multiply the selector score map in (when selector weights exist).')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  flags.DEFINE_string('weights', None, 'Weights directory (default: config.weights, the shipped model).')
  flags.DEFINE_string('selector', None, "Selector weights or workdir overriding the weights dir's selector.")
  run_main(main)

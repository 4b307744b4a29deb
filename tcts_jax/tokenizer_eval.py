r"""Held-out evaluation of the VQ tokenizer: how much of each scene survives encode -> decode.

  python -m tcts_jax.tokenizer_eval --config=configs/shapes.py:tokenizer --tokenizer=workdirs/shapes/tokenizer

Reconstructs the first `num_images` test images and scores them with the exact alignment checker
(metrics/alignment.py) against their captions' ground truth: a reconstruction that loses an object's
shape, colour, size or position loses it for every sampler too, so this is the ceiling of the model.
Also reports pixel errors and codebook usage (distinct codes over all reconstructed tokens).
"""

import json

import numpy as np
from absl import flags
from ml_collections import config_flags

from tcts_jax import checkpoint
from tcts_jax.api import images_from_tokens, tokens_from_images
from tcts_jax.data import pipeline, shapes
from tcts_jax.metrics.alignment import score_batch
from tcts_jax.models import abstract_params, build_models
from tcts_jax.visualize import to_uint8


def evaluate_tokenizer(config, params, num_images: int = 1000, batch_size: int = 250) -> dict:
  """Alignment of reconstructions of the first `num_images` test images (params: tokenizer params).

  Returns floats: the checker's means (object_accuracy, all_correct, {shape,color,size,position}_accuracy,
  ...), l1 (on [0, 1] pixels), psnr, codes_used (distinct codes), code_usage (codes_used / codebook size),
  num_images; and the same alignment means for the original images under 'originals' (the checker's floor).
  """
  models = build_models(config, shapes.vocabulary())
  loader = pipeline.make_loader('test', batch_size, config_name=config.data.config_name,
                                data_dir=config.data.data_dir, shuffle=False, num_epochs=1, drop_remainder=False)
  originals, recons, tokens, objects, counts = [], [], [], [], []
  for batch in loader:
    tok = tokens_from_images(models, params, batch['image'])
    rec = images_from_tokens(models, params, tok)
    originals.append(batch['image'])
    recons.append(to_uint8(np.asarray(rec)))
    tokens.append(np.asarray(tok))
    objects.append(batch['objects'])
    counts.append(batch['num_objects'])
    if sum(len(o) for o in originals) >= num_images:
      break
  cat = lambda xs: np.concatenate(xs)[:num_images]
  originals, recons, tokens, objects, counts = map(cat, (originals, recons, tokens, objects, counts))
  if not len(originals):
    raise ValueError('no test images to evaluate on')

  def means(images):
    return {k: v for k, v in score_batch(images, objects, counts).items() if k != 'per_image'}

  err = recons.astype(np.float64) / 255 - originals.astype(np.float64) / 255
  codes_used = int(np.unique(tokens).size)
  return {**means(recons), 'l1': float(np.abs(err).mean()),
          'psnr': float(-10 * np.log10(np.mean(err ** 2))),
          'codes_used': codes_used, 'code_usage': codes_used / config.tokenizer.codebook_size,
          'num_images': len(originals), 'originals': means(originals)}


def main(argv):
  del argv
  config = flags.FLAGS.config
  models = build_models(config, shapes.vocabulary())
  expected = abstract_params(models, config.data.image_size)['tokenizer']
  params = checkpoint.load_part(flags.FLAGS.tokenizer, 'tokenizer', expected)
  print(json.dumps(evaluate_tokenizer(config, params, flags.FLAGS.num_images), indent=1))


if __name__ == '__main__':
  from tcts_jax.cli import run_main
  config_flags.DEFINE_config_file('config', 'configs/shapes.py:tokenizer', 'Config file.', lock_config=True)
  flags.DEFINE_string('tokenizer', None, 'Tokenizer workdir or weights dir.', required=True)
  flags.DEFINE_integer('num_images', 1000, 'Test images to reconstruct and score.')
  run_main(main)

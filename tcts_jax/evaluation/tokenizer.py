"""Held-out evaluation of the VQ tokenizer: how much of each image survives encode -> decode.

Reconstructs the first `num_images` test images and scores them with the dataset's own per-image
evaluators (for captioned shapes, the exact alignment checker): a reconstruction that loses an object's
shape, colour, size or position loses it for every sampler too, so this is the ceiling of the model. Also
reports pixel errors and codebook usage (distinct codes over all reconstructed tokens).
"""

import jax
import numpy as np

from tcts_jax.data import get_dataset
from tcts_jax.evaluation import evaluators
from tcts_jax.models import build_models, image_tokens
from tcts_jax.utils.visualize import to_uint8


def evaluate_tokenizer(config, params, num_images: int = 1000, batch_size: int = 250) -> dict:
  """Scores of reconstructions of the first `num_images` test images (params: tokenizer params).

  Returns floats: the dataset evaluators' row statistics (for captioned shapes object_accuracy, all_correct,
  {shape,color,size,position}_accuracy, ...), l1 (on [0, 1] pixels), psnr, codes_used (distinct codes),
  code_usage (codes_used / codebook size), num_images; the same statistics of the original images under
  'originals' (the evaluators' own floor); and under 'unavailable' the evaluators that could not run, with why.
  """
  dataset = get_dataset(config.data)
  models = build_models(config, dataset.vocabulary())
  held_out = dataset.held_out('test', num_images)
  encode = jax.jit(image_tokens, static_argnums=0)
  decode = jax.jit(models.decode_tokens)
  tokens, recons = [], []
  for start in range(0, len(held_out), batch_size):
    tok = encode(models, params, held_out.images[start : start + batch_size])
    tokens.append(np.asarray(tok))
    recons.append(to_uint8(np.asarray(decode(params, tok))))
  tokens, recons = np.concatenate(tokens), np.concatenate(recons)
  ctx = evaluators.EvalContext(config, dataset, held_out)
  unavailable = {}
  scorers = evaluators.build(evaluators.find_all(list(dataset.evaluators), dataset), ctx, unavailable)
  example = np.arange(len(held_out))

  def statistics(images) -> dict:
    out = {}
    for scorer in scorers.values():
      out.update({k: float(v) for k, v in scorer.pool(scorer.per_image(images, example), None).items()})
    return out

  err = recons.astype(np.float64) / 255 - held_out.images.astype(np.float64) / 255
  codes_used = int(np.unique(tokens).size)
  return {
    **statistics(recons),
    'l1': float(np.abs(err).mean()),
    'psnr': float(-10 * np.log10(np.mean(err**2))),
    'codes_used': codes_used,
    'code_usage': codes_used / config.tokenizer.codebook_size,
    'num_images': len(held_out),
    'originals': statistics(held_out.images),
    'unavailable': unavailable,
  }

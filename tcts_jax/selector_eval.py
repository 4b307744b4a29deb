r"""Held-out evaluation of the TCTS selector: BCE, accuracy and AUROC on the 'test' split.

  python -m tcts_jax.selector_eval --config=configs/shapes.py:selector \
      --config.generator_checkpoint=weights/shapes --selector=workdirs/shapes/selector

Examples are made exactly as in training (stages.selector_examples) from test images and captions, with
the conditional caption (no dropout); metrics are pooled over all positions of all batches.
"""

import json
from typing import Optional

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from tcts_jax import checkpoint
from tcts_jax.data import pipeline, shapes
from tcts_jax.models import Models, abstract_params, build_models
from tcts_jax.stages import SelectorStage, selector_metrics


def evaluate_selector(config, params, num_batches: int = 16, models: Optional[Models] = None,
                      batch_size: Optional[int] = None, seed: int = 0) -> dict:
  """Pooled metrics of params['selector'] on up to `num_batches` test batches; params also hold the frozen
  'tokenizer', 'text' and 'generator'. Returns floats: bce, accuracy, auroc, positive_rate, num_positions."""
  models = models or build_models(config, shapes.vocabulary())
  stage = SelectorStage(config, models)
  batch_size = batch_size or config.train.batch_size
  loader = pipeline.make_loader('test', batch_size, config_name=config.data.config_name,
                                data_dir=config.data.data_dir, seed=seed, shuffle=False, num_epochs=1,
                                tokenize=models.word_tokenizer.encode)

  @jax.jit
  def score(params, image, text_ids, rng):
    ex = stage.examples(params, {'image': image, 'text_ids': text_ids}, rng)
    logits = models.selector.apply({'params': params['selector']}, ex['x_hat'], ex['ratio'], ex['text'],
                                   ex['text_mask'], np.zeros(ex['ratio'].shape, bool))
    return logits, ex['labels']

  logits, labels = [], []
  for i, batch in zip(range(num_batches), loader):
    l, y = score(params, batch['image'], batch['text_ids'], jax.random.key(seed + i))
    logits.append(np.asarray(l))
    labels.append(np.asarray(y))
  if not logits:
    raise ValueError('no test batches (is batch_size larger than the test split?)')
  logits, labels = np.concatenate(logits), np.concatenate(labels)
  metrics = {k: float(v) for k, v in selector_metrics(logits, labels).items()}
  return {**metrics, 'num_positions': int(labels.size)}


def load_selector_params(config, models: Models, selector_source) -> dict:
  """Frozen generator params (config.generator_checkpoint) + selector params (workdir or weights dir)."""
  params = SelectorStage(config, models).frozen()
  expected = abstract_params(models, config.data.image_size)['selector']
  params['selector'] = checkpoint.load_part(selector_source, 'selector', expected)
  return params


def main(argv):
  del argv
  config = flags.FLAGS.config
  models = build_models(config, shapes.vocabulary())
  params = load_selector_params(config, models, flags.FLAGS.selector)
  print(json.dumps(evaluate_selector(config, params, flags.FLAGS.num_batches, models), indent=1))


if __name__ == '__main__':
  from tcts_jax.cli import run_main
  config_flags.DEFINE_config_file('config', 'configs/shapes.py:selector', 'Config file.', lock_config=True)
  flags.DEFINE_string('selector', None, 'Selector workdir or weights dir.', required=True)
  flags.DEFINE_integer('num_batches', 16, 'Test batches to pool (train.batch_size each).')
  run_main(main)

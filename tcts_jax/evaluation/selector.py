"""Held-out evaluation of the TCTS selector: BCE, accuracy and AUROC on the 'test' split.

Examples are made exactly as in training (training/stages.py `selector_examples`) from test images and
captions, with the conditional caption (no dropout); metrics are pooled over all positions of all batches.
"""

from typing import Optional

import jax
import numpy as np

from tcts_jax.data import get_dataset, pipeline
from tcts_jax.models import Models, abstract_params, build_models
from tcts_jax.training.stages import SelectorStage, selector_metrics
from tcts_jax.utils import checkpoint


def evaluate_selector(
  config,
  params,
  num_batches: int = 16,
  models: Optional[Models] = None,
  batch_size: Optional[int] = None,
  seed: int = 0,
) -> dict:
  """Pooled metrics of params['selector'] on up to `num_batches` test batches; params also hold the frozen
  'tokenizer', 'text' and 'generator'. Returns floats: bce, accuracy, auroc, positive_rate, num_positions."""
  dataset = get_dataset(config.data)
  models = models or build_models(config, dataset.vocabulary())
  stage = SelectorStage(config, models)
  batch_size = batch_size or config.train.batch_size
  loader = pipeline.make_loader(
    dataset, 'test', batch_size, seed=seed, shuffle=False, num_epochs=1, tokenize=models.text_tokenizer.encode
  )

  @jax.jit
  def score(params, image, text_ids, rng):
    ex = stage.examples(params, {'image': image, 'text_ids': text_ids}, rng)
    return stage.logits(params, ex, np.zeros(ex['ratio'].shape, bool)), ex['labels']

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

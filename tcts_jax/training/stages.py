"""Training stages: what one trainer needs to know about each model it trains.

A stage owns its trainable params (a dict keyed by model part), its frozen inputs, its loss and the
pictures it logs. The trainer (trainer.py) supplies everything else: data, mesh, optimiser, checkpoints.
Class attributes say what a stage reads: `needs_text` (caption ids, from `tokenize(caption)`), `needs_codes`
(the training set's image codes, encoded once by the trainer with `encode_images(frozen, images)`) and
`needs_fields` (dataset ground truth beyond the caption). `stage_for(config, dataset)` picks the stage: on our
models, or on a frozen generator that is not ours (training/external.py).
"""

import jax
import jax.numpy as jnp
import optax

from tcts_jax.models import (
  Models,
  abstract_params,
  build_models,
  frozen_text,
  image_tokens,
  images_to_model,
  init_selector,
  init_self_guidance,
  load_clip_text_params,
  load_text_params,
  model_to_images,
)
from tcts_jax.data import get_dataset
from tcts_jax.models import features as feature_net
from tcts_jax.sampling.sampler import _truncate as truncate_logits  # the sampler's own rule (private there)
from tcts_jax.sampling.select import sample_categorical
from tcts_jax.training.corruption import RATIO_DISTRIBUTIONS, corrupt, substitute
from tcts_jax.utils import checkpoint


def image_grid(rows):
  """Stack equally sized image batches (each (B, H, W, 3) in [0, 1]) into one (rows*H, B*W, 3) grid."""
  return jnp.concatenate([jnp.concatenate(list(r), axis=1) for r in rows], axis=0)


def edge_weights(images, strength: float):
  """Per-pixel loss weights (B, H, W, 1) that grow with the largest colour step to a 4-neighbour.

  Object outlines are a few percent of the pixels but carry the shape (a 6 px circle is a 6 px square
  minus its four corner pixels); an unweighted mean lets the smooth background dominate the loss.
  Weights are 1 + strength * step (images in [-1, 1]), normalised to mean 1 over the batch.
  """
  p = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  centre = p[:, 1:-1, 1:-1]
  neighbours = (p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:])
  step = jnp.max(jnp.stack([jnp.abs(n - centre) for n in neighbours]), axis=(0, -1))[..., None]
  w = 1.0 + strength * step
  return w / jnp.mean(w)


def smoothed_cross_entropy(logits, labels, smoothing):
  """optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot(labels), smoothing)), no one-hot built.

  Smoothed labels are (1 - s) one_hot + s / K, so the loss is (1 - s) CE(label) + s mean_k(-log p_k): the
  same number with no (B, N, K) label tensor (K = 4096 codes made it the biggest array of the step).
  `smoothing` is a float or an array of the labels' shape (one value per position).
  """
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  nll = -jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
  return (1.0 - smoothing) * nll - smoothing * jnp.mean(log_p, axis=-1)


class OurModelStage:
  """What every stage of our own models shares: caption ids from the word tokenizer, codes from our VQ."""

  def __init__(self, config, models: Models):
    self.config, self.models = config, models

  @property
  def num_tokens(self) -> int:
    return self.models.num_tokens

  def tokenize(self, caption: str):
    return self.models.text_tokenizer.encode(caption)

  def encode_images(self, frozen, images):
    return image_tokens(self.models, frozen['tokenizer'], images)


class TokenizerStage(OurModelStage):
  """VQ tokenizer: edge-weighted L1 + L2 reconstruction + VQ losses."""

  parts = ('tokenizer',)
  needs_text = False
  needs_codes = False
  needs_fields = ()

  def frozen(self):
    return {}

  def init(self, rng, batch):
    return {'tokenizer': self.models.tokenizer.init(rng, images_to_model(batch['image']))['params']}

  def loss(self, params, frozen, batch, rng):
    del frozen, rng
    x = images_to_model(batch['image'])
    recon, aux = self.models.tokenizer.apply({'params': params['tokenizer']}, x)
    w = edge_weights(x, self.config.tokenizer.edge_weight)
    l1, l2 = jnp.mean(w * jnp.abs(recon - x)), jnp.mean(w * (recon - x) ** 2)
    usage = jnp.mean(
      jnp.any(jax.nn.one_hot(aux['indices'].reshape(-1), self.models.tokenizer.codebook_size) > 0, axis=0)
    )
    return l1 + l2 + aux['vq_loss'], {'l1': l1, 'l2': l2, 'vq_loss': aux['vq_loss'], 'batch_code_usage': usage}

  def images(self, params, frozen, batch):
    """Top row: data; bottom row: reconstruction through the codebook."""
    del frozen
    x = images_to_model(batch['image'][:8])
    tok = self.models.tokenizer.apply({'params': params['tokenizer']}, x, method='encode')
    recon = self.models.tokenizer.apply({'params': params['tokenizer']}, tok, method='decode')
    return image_grid([model_to_images(x), model_to_images(recon)])


class GeneratorStage(OurModelStage):
  """Text encoder + masked generator on frozen tokenizer codes (docs/design.md §2.4 training corruption). A
  pretrained text encoder (text.encoder='clip') is frozen: loaded from text.clip_dir, never trained or saved."""

  needs_text = True
  needs_codes = True
  needs_fields = ()

  @property
  def parts(self) -> tuple:
    return ('generator',) if frozen_text(self.config) else ('text', 'generator')

  def frozen(self):
    if not self.config.tokenizer_checkpoint:
      raise ValueError('the generator stage needs --config.tokenizer_checkpoint (a tokenizer workdir or weights dir)')
    expected = abstract_params(self.models, self.config.data.image_size)['tokenizer']
    frozen = {'tokenizer': checkpoint.load_part(self.config.tokenizer_checkpoint, 'tokenizer', expected)}
    if frozen_text(self.config):
      frozen['text'] = load_clip_text_params(self.config.text.clip_dir)
    return frozen

  def init(self, rng, batch):
    m, ids = self.models, batch['text_ids']
    r_text, r_gen = jax.random.split(rng)
    params = {}
    if 'text' in self.parts:
      params['text'] = m.text_encoder.init(r_text, ids)['params']
    # Only the shapes of the text features matter to the generator's initial values.
    text, mask = jnp.zeros((*ids.shape, m.text_encoder.width)), jnp.ones(ids.shape, bool)
    tokens = jnp.zeros((ids.shape[0], m.num_tokens), jnp.int32)
    params['generator'] = m.generator.init(r_gen, tokens, text, mask, jnp.zeros(tokens.shape[0], bool))['params']
    return params

  def loss(self, params, frozen, batch, rng):
    m, g = self.models, self.config.generator
    r_corrupt, r_drop = jax.random.split(rng)
    target = batch_codes(m, frozen, batch)
    inputs, masked, _ = corrupt(
      r_corrupt, target, mask_id=m.mask_id, codebook_size=m.generator.codebook_size, corrupt_prob=g.corrupt_prob
    )
    text_params = frozen['text'] if 'text' in frozen else params['text']
    text, text_mask = m.text_encoder.apply({'params': text_params}, batch['text_ids'])
    drop = jax.random.uniform(r_drop, (target.shape[0],)) < g.caption_dropout
    logits = m.generator.apply({'params': params['generator']}, inputs, text, text_mask, drop)
    # Masked and visible positions are smoothed separately: a generator meant to copy visible tokens (the
    # `copy` variant of configs/shapes.py) learns them with sharp labels.
    smoothing = jnp.where(masked, g.label_smoothing, g.visible_label_smoothing)
    ce = smoothed_cross_entropy(logits, target, smoothing)
    weights = jnp.where(masked, 1.0, g.visible_loss_weight)
    loss = jnp.sum(ce * weights) / jnp.sum(weights)
    correct = jnp.argmax(logits, -1) == target
    return loss, {
      'masked_ce': jnp.sum(ce * masked) / jnp.sum(masked),
      'masked_accuracy': jnp.sum(correct * masked) / jnp.sum(masked),
    }

  def images(self, params, frozen, batch):
    """Top row: data; bottom row: samples for the same captions (the configured sampler)."""
    from tcts_jax.sampling.sampler import Sampler  # pylint: disable=import-outside-toplevel (import cost)

    sampler = Sampler(self.models.masked_generator(), self.config.sampler)
    out = sampler({**frozen, **params}, batch['text_ids'][:8], jax.random.key(0))
    return image_grid([batch['image'][:8].astype(jnp.float32) / 255.0, out.images])


def batch_codes(models: Models, frozen, batch):
  """The batch's image codes: batch['codes'] when the trainer encoded the training set once (train.py,
  `needs_codes` stages), else the batch's images encoded here by the frozen tokenizer."""
  if 'codes' in batch:
    return batch['codes']
  return image_tokens(models, frozen['tokenizer'], batch['image'])


def auroc(scores, labels):
  """Area under the ROC curve of `scores` for boolean `labels` (rank form of Mann-Whitney U; ties count
  half). NaN when only one class is present. Pure, jittable, O(n log n)."""
  scores = jnp.ravel(jnp.asarray(scores, jnp.float32))
  labels = jnp.ravel(jnp.asarray(labels, bool))
  sorted_scores = jnp.sort(scores)
  # Average 1-based rank of each score among all scores (tied scores share their mean rank).
  rank = (jnp.searchsorted(sorted_scores, scores, 'left') + jnp.searchsorted(sorted_scores, scores, 'right') + 1) / 2
  n_pos = jnp.sum(labels).astype(jnp.float32)
  n_neg = labels.size - n_pos
  u = jnp.sum(jnp.where(labels, rank, 0.0)) - n_pos * (n_pos + 1) / 2
  return jnp.where((n_pos > 0) & (n_neg > 0), u / jnp.maximum(n_pos * n_neg, 1.0), jnp.nan)


def selector_metrics(logits, labels):
  """BCE, accuracy at logit 0, AUROC and the positive rate (the accuracy of always saying 'real' is 1 - it)."""
  logits, labels = logits.astype(jnp.float32), labels.astype(jnp.float32)
  return {
    'bce': jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels)),
    'accuracy': jnp.mean((logits > 0) == (labels > 0)),
    'auroc': auroc(logits, labels > 0),
    'positive_rate': jnp.mean(labels),
  }


# x̂ at visible positions in the selector's examples: 'redraw' (drawn like every other position) or 'keep'
# (the input token, as the sampler's visible_tokens='keep').
SELECTOR_VISIBLE_TOKENS = ('redraw', 'keep')


def draw_tokens(rng, cond, uncond, inputs, masked, *, guidance: float, temperature: float, top_p: float, visible: str):
  """x̂ (B, N) drawn from a generator's conditional and unconditional logits (B, N, K) as the sampler draws it
  (docs/design.md §2.3 steps 3-5): cond + guidance (cond - uncond), over the temperature, the sampler's top-p
  truncation; with visible='keep', x̂ = `inputs` wherever not `masked`."""
  if visible not in SELECTOR_VISIBLE_TOKENS:
    raise ValueError(f'unknown visible tokens rule {visible!r}; expected one of {SELECTOR_VISIBLE_TOKENS}')
  x_hat = sample_categorical(rng, truncate_logits((cond + guidance * (cond - uncond)) / temperature, 0, top_p))
  return jnp.where(masked, x_hat, inputs) if visible == 'keep' else x_hat


def selector_examples(
  models: Models,
  frozen,
  target,
  text_ids,
  rng,
  *,
  corrupt_prob: float,
  label: str,
  ratio: str,
  guidance: float,
  temperature: float,
  top_p: float,
  visible: str,
):
  """Selector training examples made on the fly from real data (docs/design.md §4.2), all frozen models.

  Real codes `target` (B, N) -> the generator's training corruption at a random ratio (`ratio`: 'cosine' or
  'uniform' masked fraction) -> ONE generator forward with CFG (cond + null text in one batch) -> x̂ drawn
  as the sampler draws it (`draw_tokens`). Returns x_hat (B, N), ratio (B,) = masked fraction of the
  generator input, labels (B, N) bool (True = the position was corrupted, or with label='mismatch' x̂
  differs from the real token), inputs (B, N) the generator input, text, text_mask.
  """
  m = models
  r_corrupt, r_draw = jax.random.split(rng)
  inputs, masked, replaced = corrupt(
    r_corrupt,
    target,
    mask_id=m.mask_id,
    codebook_size=m.generator.codebook_size,
    corrupt_prob=corrupt_prob,
    ratio_distribution=ratio,
  )
  text, text_mask = m.text_encoder.apply({'params': frozen['text']}, text_ids)
  b = target.shape[0]
  drop = jnp.concatenate([jnp.zeros(b, bool), jnp.ones(b, bool)])
  logits = m.generator.apply(
    {'params': frozen['generator']},
    jnp.concatenate([inputs, inputs]),
    jnp.concatenate([text, text]),
    jnp.concatenate([text_mask, text_mask]),
    drop,
  )
  cond, uncond = logits[:b], logits[b:]
  x_hat = draw_tokens(
    r_draw, cond, uncond, inputs, masked, guidance=guidance, temperature=temperature, top_p=top_p, visible=visible
  )
  labels = (masked | replaced) if label == 'corrupted' else (x_hat != target)
  return dict(
    x_hat=x_hat, ratio=jnp.mean(masked, axis=-1), labels=labels, inputs=inputs, text=text, text_mask=text_mask
  )


def token_map_images(values, size: int):
  """(B, N) values in [0, 1] on a square token grid -> (B, size, size, 3) grey images (nearest neighbour)."""
  g = round(values.shape[-1] ** 0.5)
  grid = values.reshape(-1, g, g)
  grid = jnp.repeat(jnp.repeat(grid, size // g, axis=1), size // g, axis=2)
  return jnp.broadcast_to(grid[..., None], grid.shape + (3,))


def selector_picture(images_uint8, x_hat_images, labels, logits):
  """The selector stages' picture, one row each: data; x̂ decoded; labels (white = corrupted); P(not real)."""
  size = images_uint8.shape[1]
  return image_grid(
    [
      images_uint8.astype(jnp.float32) / 255.0,
      x_hat_images,
      token_map_images(labels.astype(jnp.float32), size),
      token_map_images(jax.nn.sigmoid(logits), size),
    ]
  )


def load_frozen_generator(config, models: Models) -> dict:
  """tokenizer + text + generator params from config.generator_checkpoint (weights dir or generator
  workdir; a generator workdir has no tokenizer, which then comes from config.tokenizer_checkpoint)."""
  source = config.generator_checkpoint
  if not source:
    raise ValueError(
      f'the {config.stage} stage needs --config.generator_checkpoint (a weights dir or generator workdir)'
    )
  expected = abstract_params(models, config.data.image_size)
  frozen = {
    'text': load_text_params(config, source, expected['text']),
    'generator': checkpoint.load_part(source, 'generator', expected['generator']),
  }
  try:
    frozen['tokenizer'] = checkpoint.load_part(source, 'tokenizer', expected['tokenizer'])
  except checkpoint.CheckpointError:
    if not config.tokenizer_checkpoint:
      raise ValueError(f'{source} has no tokenizer weights: also give --config.tokenizer_checkpoint') from None
    frozen['tokenizer'] = checkpoint.load_part(config.tokenizer_checkpoint, 'tokenizer', expected['tokenizer'])
  return frozen


SELECTOR_LABELS = ('corrupted', 'mismatch')


class SelectorStage(OurModelStage):
  """TCTS selector on the frozen tokenizer, text encoder and generator (docs/design.md §4): BCE per position."""

  parts = ('selector',)
  needs_text = True
  needs_codes = True
  needs_fields = ()

  def __init__(self, config, models: Models):
    if models.selector is None:
      raise ValueError('the selector stage needs a `selector` config section')
    s = config.selector
    if s.label not in SELECTOR_LABELS:
      raise ValueError(f'unknown selector.label {s.label!r}; expected one of {SELECTOR_LABELS}')
    if s.ratio not in RATIO_DISTRIBUTIONS:
      raise ValueError(f'unknown selector.ratio {s.ratio!r}; expected one of {RATIO_DISTRIBUTIONS}')
    if s.visible_tokens not in SELECTOR_VISIBLE_TOKENS:
      raise ValueError(
        f'unknown selector.visible_tokens {s.visible_tokens!r}; expected one of {SELECTOR_VISIBLE_TOKENS}'
      )
    if s.generator_temperature <= 0 or not 0 < s.generator_top_p <= 1:
      raise ValueError(
        f'selector.generator_temperature must be > 0 and generator_top_p in (0, 1], got {s.generator_temperature}'
        f' and {s.generator_top_p}'
      )
    self.config, self.models = config, models

  def frozen(self):
    return load_frozen_generator(self.config, self.models)

  def init(self, rng, batch):
    del batch
    return {'selector': init_selector(self.models, rng, self.models.text_encoder.width)}

  def examples(self, frozen, batch, rng):
    s = self.config.selector
    return selector_examples(
      self.models,
      frozen,
      batch_codes(self.models, frozen, batch),
      batch['text_ids'],
      rng,
      corrupt_prob=self.config.generator.corrupt_prob,
      label=s.label,
      ratio=s.ratio,
      guidance=s.generator_guidance,
      temperature=s.generator_temperature,
      top_p=s.generator_top_p,
      visible=s.visible_tokens,
    )

  def logits(self, params, examples, drop):
    """Selector logits (B, N) of `examples` (from `examples`); `drop` (B,) swaps in the null text."""
    ex = examples
    return self.models.selector.apply(
      {'params': params['selector']}, ex['x_hat'], ex['ratio'], ex['text'], ex['text_mask'], drop
    )

  def loss(self, params, frozen, batch, rng):
    r_examples, r_drop = jax.random.split(rng)
    ex = self.examples(frozen, batch, r_examples)
    # Caption dropout trains the learned null text, so the selector has its own CFG.
    drop = jax.random.uniform(r_drop, ex['ratio'].shape) < self.config.selector.caption_dropout
    metrics = selector_metrics(self.logits(params, ex, drop), ex['labels'])
    return metrics['bce'], metrics

  def images(self, params, frozen, batch):
    """Rows: data; x̂ decoded; label map (white = corrupted); predicted P(not real) map."""
    m, batch = self.models, jax.tree.map(lambda a: a[:8], batch)
    ex = self.examples(frozen, batch, jax.random.key(0))
    logits = self.logits(params, ex, jnp.zeros(ex['ratio'].shape, bool))
    g = m.grid_size
    x_hat = m.tokenizer.apply({'params': frozen['tokenizer']}, ex['x_hat'].reshape(-1, g, g), method='decode')
    return selector_picture(batch['image'], model_to_images(x_hat), ex['labels'], logits)


class SelfGuidanceStage(OurModelStage):
  """Self-guidance's auxiliary model (docs/design.md §15): a low-rank adapter on the frozen generator, trained on
  error-token correction. Only the adapter trains; tokenizer, text encoder and generator are frozen inputs."""

  parts = ('self_guidance',)
  needs_text = True
  needs_codes = True
  needs_fields = ()

  def __init__(self, config, models: Models):
    if not models.self_guidance_rank:
      raise ValueError('the self_guidance stage needs a `self_guidance` config section with rank >= 1')
    if not 0 < config.self_guidance.substitution_rate <= 1:
      raise ValueError(
        f'self_guidance.substitution_rate must be in (0, 1], got {config.self_guidance.substitution_rate}'
      )
    super().__init__(config, models)

  def frozen(self):
    return load_frozen_generator(self.config, self.models)

  def init(self, rng, batch):
    del batch
    generator_shapes = abstract_params(self.models, self.config.data.image_size)['generator']
    return {'self_guidance': init_self_guidance(self.models, generator_shapes, rng)}

  def examples(self, frozen, batch, rng):
    """Error-token correction inputs: real codes masked at the generator's training ratios, then a fraction of
    the visible ones replaced by the frozen generator's own samples from the all-[MASK] canvas (as the authors
    draw them: conditional text, temperature 1)."""
    m = self.models
    r_mask, r_draw, r_sub = jax.random.split(rng, 3)
    target = batch_codes(m, frozen, batch)
    inputs, masked, _ = corrupt(
      r_mask, target, mask_id=m.mask_id, codebook_size=m.generator.codebook_size, corrupt_prob=0
    )
    text, text_mask = m.text_encoder.apply({'params': frozen['text']}, batch['text_ids'])
    keep_text = jnp.zeros(target.shape[0], bool)
    blank = jnp.full(target.shape, m.mask_id, jnp.int32)
    blank_logits = m.generator.apply({'params': frozen['generator']}, blank, text, text_mask, keep_text)
    samples = sample_categorical(r_draw, blank_logits)
    canvas, substituted = substitute(r_sub, inputs, masked, samples, self.config.self_guidance.substitution_rate)
    return dict(
      target=target,
      canvas=canvas,
      samples=samples,
      masked=masked,
      substituted=substituted,
      text=text,
      text_mask=text_mask,
    )

  def aux_logits(self, params, frozen, ex):
    generator = self.models.self_guided_params({**frozen, **params})
    keep_text = jnp.zeros(ex['canvas'].shape[0], bool)
    return self.models.generator.apply({'params': generator}, ex['canvas'], ex['text'], ex['text_mask'], keep_text)

  def loss(self, params, frozen, batch, rng):
    ex = self.examples(frozen, batch, rng)
    logits = self.aux_logits(params, frozen, ex)
    # The clean token at every position the canvas does not show truthfully: masked or substituted.
    where = ex['masked'] | ex['substituted']
    ce = smoothed_cross_entropy(logits, ex['target'], self.config.self_guidance.label_smoothing)
    correct = jnp.argmax(logits, -1) == ex['target']
    return jnp.sum(ce * where) / jnp.sum(where), {
      'masked_accuracy': jnp.sum(correct & ex['masked']) / jnp.maximum(jnp.sum(ex['masked']), 1),
      'substituted_accuracy': jnp.sum(correct & ex['substituted']) / jnp.maximum(jnp.sum(ex['substituted']), 1),
    }

  def images(self, params, frozen, batch):
    """Rows: data; the corrupted canvas decoded, its masked positions shown as the generator's samples; the
    auxiliary model's argmax prediction decoded."""
    m, batch = self.models, jax.tree.map(lambda a: a[:8], batch)
    ex = self.examples(frozen, batch, jax.random.key(0))
    prediction = jnp.argmax(self.aux_logits(params, frozen, ex), -1)
    shown = jnp.where(ex['masked'], ex['samples'], ex['canvas'])
    decoded = [m.decode_tokens(frozen['tokenizer'], tokens) for tokens in (shown, prediction)]
    return image_grid([batch['image'].astype(jnp.float32) / 255.0, *decoded])


class FeaturesStage(OurModelStage):
  """The FID-shapes feature network (models/features.py): the dataset's per-cell (and per-image) classes +
  pooled-image regression."""

  parts = ('features',)
  needs_text = False
  needs_codes = False

  def __init__(self, config, models: Models):
    super().__init__(config, models)  # the feature network itself is independent of the text-to-image model
    self.dataset = get_dataset(config.data)
    if not self.dataset.feature_heads:
      raise ValueError(f'dataset {self.dataset.name!r} has no ground truth to train the FID-shapes feature network on')
    self.needs_fields = self.dataset.fields
    self.net = feature_net.build_feature_net(config, self.dataset.feature_heads)

  def frozen(self):
    return {}

  def init(self, rng, batch):
    return {'features': self.net.init(rng, batch['image'])['params']}

  def loss(self, params, frozen, batch, rng):
    del frozen, rng
    out = self.net.apply({'params': params['features']}, batch['image'])
    mse = jnp.mean((out['pooled'] - feature_net.pooled_targets(batch['image'])) ** 2)
    loss, metrics = self.config.features.pooled_weight * mse, {'pooled_mse': mse}
    for name, targets in self.dataset.feature_targets(batch).items():
      logits = out[f'{name}_logits']
      ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets))
      correct = jnp.argmax(logits, -1) == targets
      loss += ce
      metrics.update({f'{name}_ce': ce, f'{name}_accuracy': jnp.mean(correct)})
      if name == 'cell':
        metrics['image_accuracy'] = jnp.mean(jnp.all(correct, axis=-1))
    return loss, metrics

  def images(self, params, frozen, batch):
    """The training images (the stage has no pictures of its own)."""
    del params, frozen
    return image_grid([batch['image'][:8].astype(jnp.float32) / 255.0])


STAGES = {
  'tokenizer': TokenizerStage,
  'generator': GeneratorStage,
  'selector': SelectorStage,
  'self_guidance': SelfGuidanceStage,
  'features': FeaturesStage,
}


def make_stage(config, models: Models):
  if config.stage not in STAGES:
    raise ValueError(f'stage {config.stage!r} cannot be trained; expected one of {sorted(STAGES)}')
  return STAGES[config.stage](config, models)


def stage_for(config, dataset):
  """The stage `config` trains: one of ours (the super_res stage on a base model of ours), or with
  `config.model == 'amused'` the selector on that frozen generator."""
  if config.get('model') == 'amused':
    from tcts_jax.training.external import AmusedSelectorStage  # pylint: disable=import-outside-toplevel

    return AmusedSelectorStage(config)
  if config.stage == 'super_res':
    from tcts_jax.training.super_res import SuperResStage  # pylint: disable=import-outside-toplevel (cycle)

    return SuperResStage(config)
  return make_stage(config, build_models(config, dataset.vocabulary()))

"""The TCTS selector trained on a frozen generator that is not ours (aMUSEd), through the sampler's protocol.

The examples are made as for our generator (docs/design.md §4): real codes of the dataset's images (through
THAT generator's VQ), the training corruption at a random ratio, one CFG forward of the frozen generator
(`MaskedGenerator.logits` over its own text state, its unconditional half the empty prompt), x̂ drawn at every
position. The selector reads x̂ on that generator's token grid and codebook, and the generator's own text
features (CLIP's penultimate states for aMUSEd); caption dropout swaps in the empty prompt, which is what the
sampler's unconditional rows read.
"""

import jax
import jax.numpy as jnp

from tcts_jax.models.amused.pipeline import build_selector, load_amused, selector_example_inputs, selector_inputs
from tcts_jax.sampling.model import MaskedGenerator
from tcts_jax.sampling.select import sample_categorical
from tcts_jax.training.corruption import corrupt
from tcts_jax.training.stages import SELECTOR_LABELS, selector_metrics, selector_picture


def examples_from_generator(
  model: MaskedGenerator, params, target, text_ids, rng, *, corrupt_prob: float, guidance: float, label: str
):
  """x_hat (B, N), ratio (B,), labels (B, N) for selector training, from any generator given as functions."""
  r_corrupt, r_draw = jax.random.split(rng)
  inputs, masked, replaced = corrupt(
    r_corrupt, target, mask_id=model.mask_id, codebook_size=model.codebook_size, corrupt_prob=corrupt_prob
  )
  text_state = model.encode_text(params, text_ids, None)
  logits, _ = model.logits(params, jnp.concatenate([inputs, inputs]), text_state, None)
  b = target.shape[0]
  cond, uncond = logits[:b].astype(jnp.float32), logits[b:].astype(jnp.float32)
  x_hat = sample_categorical(r_draw, cond + guidance * (cond - uncond))
  labels = (masked | replaced) if label == 'corrupted' else (x_hat != target)
  return dict(x_hat=x_hat, ratio=jnp.mean(masked, axis=-1), labels=labels)


class AmusedSelectorStage:
  """The selector stage on a frozen aMUSEd (config.weights): BCE per position, as SelectorStage."""

  parts = ('selector',)
  needs_text = True
  needs_codes = True
  needs_fields = ()

  def __init__(self, config):
    if config.stage != 'selector':
      raise ValueError(f'only the selector stage trains on aMUSEd (it is frozen), not {config.stage!r}')
    if config.selector.label not in SELECTOR_LABELS:
      raise ValueError(f'unknown selector.label {config.selector.label!r}; expected one of {SELECTOR_LABELS}')
    if not config.weights:
      raise ValueError('the selector stage needs --config.weights=DIR, a diffusers aMUSEd directory')
    self.config = config
    amused = load_amused(config.weights, config.dtype, config.micro_conditioning)
    if config.data.image_size != amused.image_size:
      raise ValueError(f"data.image_size {config.data.image_size} is not the checkpoint's {amused.image_size}")
    self.selector = build_selector(config.selector, amused)
    self.amused = amused.with_selector(self.selector)
    self.model = self.amused.masked_generator()
    self.num_tokens = amused.num_tokens
    self._empty_ids = jnp.asarray(amused.empty_ids)

  def tokenize(self, caption: str):
    return self.amused.encode_prompts([caption])[0]

  def encode_images(self, frozen, images):
    return self.amused.image_codes(frozen, images)

  def frozen(self):
    return self.amused.params

  def init(self, rng, batch):
    del batch
    return {'selector': self.selector.init(rng, *selector_example_inputs(self.amused))['params']}

  def examples(self, frozen, batch, rng):
    s = self.config.selector
    return examples_from_generator(
      self.model,
      frozen,
      batch['codes'],
      batch['text_ids'],
      rng,
      corrupt_prob=s.corrupt_prob,
      guidance=s.generator_guidance,
      label=s.label,
    )

  def logits(self, params, frozen, examples, text_ids, drop):
    """Selector logits (B, N); rows where `drop` read the empty prompt instead of their caption."""
    ids = jnp.where(drop[:, None], self._empty_ids, text_ids)
    text = self.amused.text_tower.apply({'params': frozen['text_encoder']}, ids, hidden_states=True)['penultimate']
    return self.selector.apply(
      {'params': params['selector']}, examples['x_hat'], examples['ratio'], *selector_inputs(text)
    )

  def loss(self, params, frozen, batch, rng):
    r_examples, r_drop = jax.random.split(rng)
    ex = self.examples(frozen, batch, r_examples)
    drop = jax.random.uniform(r_drop, ex['ratio'].shape) < self.config.selector.caption_dropout
    metrics = selector_metrics(self.logits(params, frozen, ex, batch['text_ids'], drop), ex['labels'])
    return metrics['bce'], metrics

  def images(self, params, frozen, batch):
    """Rows: data; x̂ decoded; label map (white = corrupted); predicted P(not real) map."""
    batch = jax.tree.map(lambda a: a[:8], batch)
    ex = self.examples(frozen, batch, jax.random.key(0))
    logits = self.logits(params, frozen, ex, batch['text_ids'], jnp.zeros(ex['ratio'].shape, bool))
    return selector_picture(batch['image'], self.model.decode(frozen, ex['x_hat']), ex['labels'], logits)

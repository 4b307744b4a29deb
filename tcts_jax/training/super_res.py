"""The super-resolution stage (Muse §2.3, docs/design.md §17): trains `models.super_res.SuperResGenerator` on the
high-resolution data, conditioned on the frozen base model's tokens of the same images at half the size.

The trainer encodes the training set once (`needs_codes`): each record's codes are its high-resolution tokens
(the high-resolution VQ, `config.tokenizer_checkpoint`) followed by its low-resolution ones (the base VQ on the
image area-downsampled by 2). The loss is the generator stage's: the high-resolution tokens corrupted as in
docs/design.md §2.4, cross-entropy, caption dropout for guidance (the text only).
"""

import jax
import jax.numpy as jnp

from tcts_jax.data import get_dataset
from tcts_jax.models import abstract_params, build_models, image_tokens, images_to_model, super_res
from tcts_jax.training.corruption import corrupt
from tcts_jax.training.stages import image_grid, smoothed_cross_entropy
from tcts_jax.utils import checkpoint
from tcts_jax.utils.config import load_config


def downsample(images_uint8, factor: int = 2):
  """(B, H, W, 3) uint8 -> (B, H/f, W/f, 3) uint8 by averaging f x f blocks (the base model's view of an image)."""
  b, h, w, c = images_uint8.shape
  blocks = images_uint8.reshape(b, h // factor, factor, w // factor, factor, c).astype(jnp.float32)
  return jnp.round(jnp.mean(blocks, axis=(2, 4))).astype(jnp.uint8)


def base_model(config):
  """(base config, base `Models`, base weights dir) of the super-resolution config `config`."""
  base = load_config(config.super_res.base_config)
  models = build_models(base, get_dataset(base.data).vocabulary())
  return base, models, config.super_res.base_weights or base.weights


class SuperResStage:
  """Trains {'super_res'}; frozen: the high-resolution VQ, the base VQ and the base text encoder."""

  parts = ('super_res',)
  needs_text = True
  needs_codes = True
  needs_fields = ()

  def __init__(self, config):
    self.config = config
    self.base_config, self.base_models, self.base_weights = base_model(config)
    if config.data.image_size != 2 * self.base_config.data.image_size:
      raise ValueError(
        f'the super_res stage trains on images twice the base size ({2 * self.base_config.data.image_size} px), '
        f'got data.image_size {config.data.image_size}'
      )
    self.models: super_res.SuperResModels = super_res.build_super_res(config, self.base_models)

  @property
  def num_tokens(self) -> int:
    return self.models.num_tokens + self.base_models.num_tokens  # high-resolution codes, then low-resolution ones

  def tokenize(self, caption: str):
    return self.models.text_tokenizer.encode(caption)

  def frozen(self):
    if not self.config.tokenizer_checkpoint:
      raise ValueError('the super_res stage needs --config.tokenizer_checkpoint (the 64 px tokenizer, `tokenizer,x2`)')
    base = abstract_params(self.base_models, self.base_config.data.image_size)
    high = super_res.abstract_params(self.models, self.config.data.image_size)['tokenizer']
    return {
      'tokenizer': checkpoint.load_part(self.config.tokenizer_checkpoint, 'tokenizer', high),
      'base_tokenizer': checkpoint.load_part(self.base_weights, 'tokenizer', base['tokenizer']),
      'text': checkpoint.load_part(self.base_weights, 'text', base['text']),
    }

  def encode_images(self, frozen, images):
    high = self.models.tokenizer.apply({'params': frozen['tokenizer']}, images_to_model(images), method='encode')
    low = image_tokens(self.base_models, frozen['base_tokenizer'], downsample(images))
    return jnp.concatenate([high.reshape(high.shape[0], -1), low], axis=1)

  def init(self, rng, batch):
    del batch
    return {'super_res': super_res.init_params(self.models, self.config.data.image_size, rng)['super_res']}

  def split_codes(self, batch):
    codes = batch['codes']
    return codes[:, : self.models.num_tokens], codes[:, self.models.num_tokens :]

  def loss(self, params, frozen, batch, rng):
    g, m = self.config.generator, self.models
    r_corrupt, r_drop = jax.random.split(rng)
    target, low = self.split_codes(batch)
    generator = m.model.generator
    inputs, masked, _ = corrupt(
      r_corrupt, target, mask_id=generator.mask_id, codebook_size=generator.codebook_size, corrupt_prob=g.corrupt_prob
    )
    drop = jax.random.uniform(r_drop, (target.shape[0],)) < g.caption_dropout
    context = m.encode({**frozen, **params}, super_res.pack_conditioning(batch['text_ids'], low), drop)
    logits = m.model.apply({'params': params['super_res']}, inputs, context, method='logits')
    smoothing = jnp.where(masked, g.label_smoothing, g.visible_label_smoothing)
    ce = smoothed_cross_entropy(logits, target, smoothing)
    weights = jnp.where(masked, 1.0, g.visible_loss_weight)
    correct = jnp.argmax(logits, -1) == target
    return jnp.sum(ce * weights) / jnp.sum(weights), {
      'masked_ce': jnp.sum(ce * masked) / jnp.sum(masked),
      'masked_accuracy': jnp.sum(correct * masked) / jnp.sum(masked),
    }

  def images(self, params, frozen, batch):
    """Rows: data (high resolution); the base VQ's low-resolution tokens decoded, upsampled; the stage's samples
    from them (the configured sampler at super_res.steps)."""
    from tcts_jax.sampling.sampler import Sampler, sampler_config  # pylint: disable=import-outside-toplevel

    batch = jax.tree.map(lambda a: a[:8], batch)
    _, low = self.split_codes(batch)
    cfg = sampler_config(self.config.sampler, steps=self.config.super_res.steps)
    out = Sampler(self.models.masked_generator(), cfg)(
      {**frozen, **params}, super_res.pack_conditioning(batch['text_ids'], low), jax.random.key(0)
    )
    low_images = self.base_models.decode_tokens(frozen['base_tokenizer'], low)
    upsampled = jnp.repeat(jnp.repeat(low_images, 2, axis=1), 2, axis=2)
    return image_grid([batch['image'].astype(jnp.float32) / 255.0, upsampled, out.images])

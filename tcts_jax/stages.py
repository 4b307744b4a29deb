"""Training stages: what one trainer needs to know about each model it trains.

A stage owns its trainable params (a dict keyed by model part), its frozen inputs, its loss and the
pictures it logs. The trainer (train.py) supplies everything else: data, mesh, optimiser, checkpoints.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tcts_jax import checkpoint
from tcts_jax.corruption import corrupt
from tcts_jax.models import Models, abstract_params


def images_to_model(images_uint8):
  return images_uint8.astype(jnp.float32) / 127.5 - 1.0


def model_to_images(x):
  return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def image_grid(rows):
  """Stack equally sized image batches (each (B, H, W, 3) in [0, 1]) into one (rows*H, B*W, 3) grid."""
  return jnp.concatenate([jnp.concatenate(list(r), axis=1) for r in rows], axis=0)


class TokenizerStage:
  """VQ tokenizer: L1 + L2 reconstruction + VQ losses."""
  parts = ('tokenizer',)
  needs_text = False

  def __init__(self, config, models: Models):
    self.config, self.models = config, models

  def frozen(self):
    return {}

  def init(self, rng, batch):
    return {'tokenizer': self.models.tokenizer.init(rng, images_to_model(batch['image']))['params']}

  def loss(self, params, frozen, batch, rng):
    del frozen, rng
    x = images_to_model(batch['image'])
    recon, aux = self.models.tokenizer.apply({'params': params['tokenizer']}, x)
    l1, l2 = jnp.mean(jnp.abs(recon - x)), jnp.mean((recon - x) ** 2)
    usage = jnp.mean(jnp.any(jax.nn.one_hot(aux['indices'].reshape(-1), self.models.tokenizer.codebook_size) > 0,
                             axis=0))
    return l1 + l2 + aux['vq_loss'], {'l1': l1, 'l2': l2, 'vq_loss': aux['vq_loss'], 'batch_code_usage': usage}

  def images(self, params, frozen, batch):
    """Top row: data; bottom row: reconstruction through the codebook."""
    del frozen
    x = images_to_model(batch['image'][:8])
    tok = self.models.tokenizer.apply({'params': params['tokenizer']}, x, method='encode')
    recon = self.models.tokenizer.apply({'params': params['tokenizer']}, tok, method='decode')
    return image_grid([model_to_images(x), model_to_images(recon)])


class GeneratorStage:
  """Text encoder + masked generator on frozen tokenizer codes (DESIGN §2 training corruption)."""
  parts = ('text', 'generator')
  needs_text = True

  def __init__(self, config, models: Models):
    self.config, self.models = config, models

  def frozen(self):
    if not self.config.tokenizer_checkpoint:
      raise ValueError('the generator stage needs --config.tokenizer_checkpoint (a tokenizer workdir or weights dir)')
    expected = abstract_params(self.models, self.config.data.image_size)['tokenizer']
    return {'tokenizer': checkpoint.load_part(self.config.tokenizer_checkpoint, 'tokenizer', expected)}

  def init(self, rng, batch):
    m = self.models
    r_text, r_gen = jax.random.split(rng)
    text_params = m.text_encoder.init(r_text, batch['text_ids'])['params']
    text, mask = m.text_encoder.apply({'params': text_params}, batch['text_ids'])
    tokens = jnp.zeros((batch['text_ids'].shape[0], m.num_tokens), jnp.int32)
    gen_params = m.generator.init(r_gen, tokens, text, mask, jnp.zeros(tokens.shape[0], bool))['params']
    return {'text': text_params, 'generator': gen_params}

  def tokens(self, frozen, images_uint8):
    grid = self.models.tokenizer.apply({'params': frozen['tokenizer']}, images_to_model(images_uint8),
                                       method='encode')
    return grid.reshape(grid.shape[0], -1)

  def loss(self, params, frozen, batch, rng):
    m, g = self.models, self.config.generator
    r_corrupt, r_drop = jax.random.split(rng)
    target = self.tokens(frozen, batch['image'])
    inputs, masked, _ = corrupt(r_corrupt, target, mask_id=m.mask_id, codebook_size=m.generator.codebook_size,
                                corrupt_prob=g.corrupt_prob)
    text, text_mask = m.text_encoder.apply({'params': params['text']}, batch['text_ids'])
    drop = jax.random.uniform(r_drop, (target.shape[0],)) < g.caption_dropout
    logits = m.generator.apply({'params': params['generator']}, inputs, text, text_mask, drop)
    labels = optax.smooth_labels(jax.nn.one_hot(target, m.generator.codebook_size), g.label_smoothing)
    ce = optax.softmax_cross_entropy(logits, labels)
    weights = jnp.where(masked, 1.0, g.visible_loss_weight)
    loss = jnp.sum(ce * weights) / jnp.sum(weights)
    correct = jnp.argmax(logits, -1) == target
    return loss, {'masked_ce': jnp.sum(ce * masked) / jnp.sum(masked),
                  'masked_accuracy': jnp.sum(correct * masked) / jnp.sum(masked)}

  def images(self, params, frozen, batch):
    """Top row: data; bottom row: samples for the same captions (the configured sampler)."""
    from tcts_jax.sampling.sampler import Sampler  # the sampler imports models; keep stage import light
    if not hasattr(self, '_sampler'):
      self._sampler = Sampler(self.models, self.config.sampler)
    out = self._sampler({**frozen, **params}, batch['text_ids'][:8], jax.random.key(0))
    return image_grid([batch['image'][:8].astype(jnp.float32) / 255.0, out.images])


STAGES = {'tokenizer': TokenizerStage, 'generator': GeneratorStage}


def make_stage(config, models: Models):
  if config.stage not in STAGES:
    raise ValueError(f'stage {config.stage!r} cannot be trained; expected one of {sorted(STAGES)}')
  return STAGES[config.stage](config, models)

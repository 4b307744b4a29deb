"""VQ image tokenizer (VQGAN-style encoder / codebook / decoder, without the GAN).

The codebook lookup uses l2-normalised codes (cosine similarity, as in ViT-VQGAN), which keeps codebook
usage high without restarts; gradients pass the quantiser straight-through.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ResBlock(nn.Module):
  channels: int

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.channels, (3, 3))(nn.swish(nn.GroupNorm(num_groups=8)(x)))
    h = nn.Conv(self.channels, (3, 3))(nn.swish(nn.GroupNorm(num_groups=8)(h)))
    if x.shape[-1] != self.channels:
      x = nn.Conv(self.channels, (1, 1))(x)
    return x + h


class Encoder(nn.Module):
  channels: Sequence[int]
  num_res_blocks: int
  code_dim: int

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.channels[0], (3, 3))(x)
    for ch in self.channels:
      x = nn.Conv(ch, (4, 4), strides=(2, 2))(x)
      for _ in range(self.num_res_blocks):
        x = ResBlock(ch)(x)
    x = nn.swish(nn.GroupNorm(num_groups=8)(x))
    return nn.Conv(self.code_dim, (1, 1))(x)


class Decoder(nn.Module):
  channels: Sequence[int]
  num_res_blocks: int

  @nn.compact
  def __call__(self, z):
    x = nn.Conv(self.channels[-1], (3, 3))(z)
    for ch in reversed(self.channels):
      for _ in range(self.num_res_blocks):
        x = ResBlock(ch)(x)
      b, h, w, c = x.shape
      x = jax.image.resize(x, (b, 2 * h, 2 * w, c), 'nearest')
      x = nn.Conv(ch, (3, 3))(x)
    x = nn.swish(nn.GroupNorm(num_groups=8)(x))
    return nn.Conv(3, (3, 3))(x)


def _l2_normalize(x, eps=1e-6):
  return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class VQTokenizer(nn.Module):
  """Images in [-1, 1], (B, H, W, 3) <-> token grids (B, H/2^L, W/2^L) with L = len(channels)."""

  channels: Sequence[int]
  num_res_blocks: int
  codebook_size: int
  code_dim: int
  commitment_cost: float = 0.25

  def setup(self):
    self.encoder = Encoder(self.channels, self.num_res_blocks, self.code_dim)
    self.decoder = Decoder(self.channels, self.num_res_blocks)
    self.codebook = self.param('codebook', nn.initializers.normal(1.0), (self.codebook_size, self.code_dim))

  def _quantize(self, z):
    z = _l2_normalize(z)
    codes = _l2_normalize(self.codebook)
    indices = jnp.argmax(z @ codes.T, axis=-1)
    return indices, z, codes[indices]

  def encode(self, images):
    """Token indices (B, h, w) int32."""
    return self._quantize(self.encoder(images))[0].astype(jnp.int32)

  def decode(self, indices):
    """Images (B, H, W, 3) in about [-1, 1] from token indices (B, h, w)."""
    return self.decoder(_l2_normalize(self.codebook)[indices])

  def resize(self, indices, size: int):
    """Token indices (B, h, w) -> (B, size, size): the code embeddings resized bilinearly and re-quantised to the
    nearest code (high resolution, docs/design.md §16.2)."""
    codes = _l2_normalize(self.codebook)
    z = jax.image.resize(codes[indices], (indices.shape[0], size, size, codes.shape[-1]), 'bilinear')
    return jnp.argmax(_l2_normalize(z) @ codes.T, axis=-1).astype(jnp.int32)

  def __call__(self, images):
    """Reconstruction and the VQ losses (codebook + commitment), for training."""
    indices, z, zq = self._quantize(self.encoder(images))
    codebook_loss = jnp.mean((jax.lax.stop_gradient(z) - zq) ** 2)
    commitment_loss = jnp.mean((z - jax.lax.stop_gradient(zq)) ** 2)
    zq = z + jax.lax.stop_gradient(zq - z)  # straight-through
    recon = self.decoder(zq)
    return recon, {'vq_loss': codebook_loss + self.commitment_cost * commitment_loss, 'indices': indices}

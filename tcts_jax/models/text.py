"""Text side: a word-level tokenizer over a fixed vocabulary and a small learned text encoder.

Any text encoder used by the generator maps token ids (B, L) to per-token embeddings (B, L, D) and a
padding mask (B, L); a frozen pretrained encoder can replace `TextEncoder` behind the same interface.
"""

import dataclasses
import re
from typing import Sequence

import flax.linen as nn
import numpy as np

from tcts_jax.models.layers import TransformerBlock

PAD, UNK = '[PAD]', '[UNK]'


class UnknownWordsError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class WordTokenizer:
  """Lower-cased whitespace words -> ids; id 0 is padding, id 1 is the unknown word."""

  words: tuple[str, ...]
  max_length: int

  @classmethod
  def from_vocabulary(cls, vocabulary: Sequence[str], max_length: int) -> 'WordTokenizer':
    return cls((PAD, UNK) + tuple(w for w in vocabulary if w not in (PAD, UNK)), max_length)

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  @property
  def _index(self) -> dict[str, int]:
    return {w: i for i, w in enumerate(self.words)}

  @staticmethod
  def split(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())

  def unknown_words(self, text: str) -> list[str]:
    index = self._index
    return [w for w in self.split(text) if w not in index]

  def encode(self, text: str, strict: bool = False) -> np.ndarray:
    """Fixed-length int32 ids (truncated to max_length). strict: raise on out-of-vocabulary words."""
    if not text.strip():
      raise ValueError('empty prompt')
    if strict and (unknown := self.unknown_words(text)):
      raise UnknownWordsError(f'words not in the vocabulary: {", ".join(unknown)}')
    index = self._index
    ids = [index.get(w, 1) for w in self.split(text)][: self.max_length]
    out = np.zeros(self.max_length, np.int32)
    out[: len(ids)] = ids
    return out

  def encode_batch(self, texts: Sequence[str], strict: bool = False) -> np.ndarray:
    return np.stack([self.encode(t, strict) for t in texts])

  def decode(self, ids) -> str:
    return ' '.join(self.words[i] for i in np.asarray(ids) if i != 0)


class TextEncoder(nn.Module):
  """Bidirectional transformer over word ids -> (per-token embeddings, padding mask)."""

  vocab_size: int
  max_length: int
  width: int
  num_layers: int
  num_heads: int

  @nn.compact
  def __call__(self, ids):
    mask = ids != 0
    x = nn.Embed(self.vocab_size, self.width)(ids)
    x = x + self.param('pos_embedding', nn.initializers.normal(0.02), (1, self.max_length, self.width))
    attn_mask = nn.make_attention_mask(mask, mask)
    for i in range(self.num_layers):
      x = TransformerBlock(self.num_heads, self.width, name=f'block_{i}')(x, self_mask=attn_mask)
    return nn.LayerNorm()(x), mask

"""Text side: a prompt tokenizer and a text encoder, chosen by `config.text.encoder` (docs/design.md §14).

- 'learned': `WordTokenizer` (lower-cased words over the training captions' vocabulary) and `TextEncoder`,
  a small transformer trained with the generator;
- 'clip': `ClipTokenizer` (transformers' CLIP BPE) and `ClipTextEncoder`, a FROZEN pretrained CLIP text tower
  (models/clip.py, HF safetensors) whose last hidden states (after its final layer norm) are the text
  features, as the paper conditions on CLIP ViT-B/32 text features.

Both encoders map ids (B, L) to per-token embeddings (B, L, width) and a padding mask (B, L); both tokenizers
give fixed-length ids (`encode_batch`), say how much of a prompt they drop (`dropped`), and find a word's
positions for editing (`word_mask`).
"""

import dataclasses
import pathlib
import re
import shutil
from typing import Any, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from tcts_jax.models.clip import CLIPTextConfig, CLIPTextTower, load_clip_config, load_clip_from_safetensors
from tcts_jax.models.layers import TransformerBlock
from tcts_jax.utils.config import resolve_path

TEXT_ENCODERS = ('learned', 'clip')

PAD, UNK = '[PAD]', '[UNK]'


class UnknownWordsError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class WordTokenizer:
  """Lower-cased whitespace words -> ids; id 0 is padding, id 1 is the unknown word."""

  words: tuple[str, ...]
  max_length: int
  unit = 'words'  # what `dropped` counts

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

  def dropped(self, texts: Sequence[str]) -> list[int]:
    """Per text, how many of its words fall beyond `max_length` (0 for most)."""
    return [max(0, len(self.split(t)) - self.max_length) for t in texts]

  def word_mask(self, prompt: str, word: Union[str, int]) -> np.ndarray:
    """(L,) bool: the text positions of `word` in `prompt` (every occurrence), or of word number `word`."""
    words = self.split(prompt)
    limit = min(len(words), self.max_length)
    mask = np.zeros(self.max_length, bool)
    if isinstance(word, (int, np.integer)):
      if not 0 <= word < limit:
        raise ValueError(f'word index {word} out of range: the prompt {prompt!r} has {limit} words')
      mask[word] = True
      return mask
    parts = self.split(word)
    if len(parts) != 1:
      raise ValueError(f'the word to edit must be one word, got {word!r}')
    hits = [i for i, w in enumerate(words[:limit]) if w == parts[0]]
    if not hits:
      where = f' (within its first {limit} words)' if parts[0] in words else ''
      raise ValueError(f'word {word!r} is not in the prompt {prompt!r}{where}')
    mask[hits] = True
    return mask


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


@dataclasses.dataclass(frozen=True, eq=False)
class ClipTokenizer:
  """transformers' CLIP tokenizer with the interface of `WordTokenizer`: ids padded to `max_length` with the
  start and end tokens, as CLIP reads them. BPE has no unknown words (`unknown_words` is always empty)."""

  tokenizer: Any  # transformers.CLIPTokenizer
  max_length: int
  unit = 'tokens'

  @property
  def vocab_size(self) -> int:
    return len(self.tokenizer)

  def unknown_words(self, text: str) -> list[str]:
    del text
    return []

  def encode(self, text: str, strict: bool = False) -> np.ndarray:
    return self.encode_batch([text], strict)[0]

  def encode_batch(self, texts: Sequence[str], strict: bool = False) -> np.ndarray:
    del strict  # every text has a tokenization (the empty one too: the usual negative prompt)
    ids = self.tokenizer(list(texts), padding='max_length', max_length=self.max_length, truncation=True).input_ids
    return np.asarray(ids, np.int32)

  def dropped(self, texts: Sequence[str]) -> list[int]:
    """Per text, how many of its tokens (start and end included) fall beyond `max_length` (0 for most)."""
    return [max(0, len(ids) - self.max_length) for ids in self.tokenizer(list(texts)).input_ids]

  def word_mask(self, prompt: str, word: Union[str, int]) -> np.ndarray:
    """(max_length,) bool: the token positions of `word` in `prompt` (every occurrence), or of word number
    `word` (words split at whitespace; CLIP's BPE never merges across words, so each word's tokens follow the
    previous word's)."""
    words = prompt.split()
    if isinstance(word, (int, np.integer)):
      if not 0 <= word < len(words):
        raise ValueError(f'word index {word} out of range: the prompt {prompt!r} has {len(words)} words')
      hits = [int(word)]
    else:
      if len(word.split()) != 1:
        raise ValueError(f'the word to edit must be one word, got {word!r}')
      hits = [i for i, w in enumerate(words) if w.lower().strip('.,;:!?') == word.lower()]
      if not hits:
        raise ValueError(f'word {word!r} is not in the prompt {prompt!r}')
    lengths = [len(ids) for ids in self.tokenizer(words, add_special_tokens=False).input_ids]
    starts = np.cumsum([1] + lengths)  # position 0 is the start-of-text token
    mask = np.zeros(self.max_length, bool)
    for i in hits:
      mask[min(starts[i], self.max_length) : min(starts[i] + lengths[i], self.max_length)] = True
    if not mask.any():
      raise ValueError(f'word {word!r} falls beyond the {self.max_length} tokens the text encoder reads')
    return mask


class ClipTextEncoder(nn.Module):
  """A CLIP text tower over CLIP ids -> (its last hidden states, after the final layer norm; the mask of the
  tokens up to and including the first end-of-text token). Its params ({'clip': tower params}) come from a
  CLIP checkpoint and stay frozen (training/stages.py)."""

  config: CLIPTextConfig

  @property
  def width(self) -> int:
    return self.config.hidden_size

  @nn.compact
  def __call__(self, ids):
    states = CLIPTextTower(self.config, name='clip')(ids, hidden_states=True)['last_hidden_state']
    # Legacy configs say eos_token_id 2; the end token is then the largest id (as CLIPTextTower pools).
    eos = self.config.vocab_size - 1 if self.config.eos_token_id == 2 else self.config.eos_token_id
    # Padding repeats the end token in OpenAI's checkpoints, so the mask is "no end token before me".
    is_end = ids == eos
    return states, jnp.cumsum(is_end, axis=-1) - is_end == 0


def clip_directory(directory) -> str:
  """A HF CLIP directory (config.json, tokenizer files; model.safetensors for the weights), checked."""
  if not directory:
    raise ValueError("text.encoder='clip' needs --config.text.clip_dir (a HF CLIP directory)")
  path = resolve_path(directory)
  if not path.is_dir():
    raise FileNotFoundError(f'CLIP directory not found: {directory}')
  return str(path)


def load_clip_text(directory, max_length: int) -> tuple[ClipTokenizer, ClipTextEncoder]:
  """The tokenizer and (frozen) encoder of a HF CLIP directory's text tower; ids of `max_length` tokens."""
  from transformers import CLIPTokenizer  # pylint: disable=import-outside-toplevel (import cost)

  directory = clip_directory(directory)
  config = load_clip_config(directory).text
  if config is None:
    raise ValueError(f'the CLIP checkpoint in {directory} has no text tower')
  if not 2 <= max_length <= config.max_position_embeddings:
    raise ValueError(
      f'text.max_length must be in [2, {config.max_position_embeddings}] (the CLIP tower reads '
      f'{config.max_position_embeddings} tokens), got {max_length}'
    )
  tokenizer = CLIPTokenizer.from_pretrained(directory, local_files_only=True)
  return ClipTokenizer(tokenizer, max_length), ClipTextEncoder(config)


def load_clip_text_params(directory) -> dict:
  """`ClipTextEncoder` params of a HF CLIP directory's weights (float32)."""
  _, text_params, _ = load_clip_from_safetensors(clip_directory(directory))
  if text_params is None:
    raise ValueError(f'the CLIP checkpoint in {directory} has no text tower')
  return {'clip': text_params}


# What a CLIP-conditioned weights dir keeps of the HF directory besides the weights (transformers' tokenizer
# files, whichever of them the directory has).
CLIP_TEXT_FILES = (
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'vocab.json',
  'merges.txt',
  'special_tokens_map.json',
)


def copy_clip_text_files(directory, out) -> None:
  """Copies the config and tokenizer files of a HF CLIP directory to `out` (what `load_clip_text` reads)."""
  source = pathlib.Path(clip_directory(directory))
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  for name in CLIP_TEXT_FILES:
    if (source / name).is_file():
      shutil.copyfile(source / name, out / name)

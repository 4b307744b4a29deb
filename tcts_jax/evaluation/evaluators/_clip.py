"""CLIP image and text embeddings from a HF CLIP safetensors dir, shared by the CLIP-S and MID evaluators."""

import functools

import numpy as np

from tcts_jax.evaluation.evaluators import Unavailable
from tcts_jax.utils.config import resolve_path


class ClipFeatures:
  """`images(uint8)` and `texts(captions)` -> (N, d) embeddings; the last image set's embeddings are kept, so
  two evaluators of one row embed its images once."""

  def __init__(self, path, batch_size: int = 64):
    from transformers import CLIPTokenizer  # pylint: disable=import-outside-toplevel (heavy, optional)

    from tcts_jax.models import clip  # pylint: disable=import-outside-toplevel

    self.clip = clip
    self.config, self.text_params, self.vision_params = clip.load_clip_from_safetensors(str(path))
    if self.config.text is None or self.config.vision is None:
      raise ValueError(f'CLIP checkpoint {path} lacks a text or vision tower')
    self.tokenizer = CLIPTokenizer.from_pretrained(str(path))
    self.batch_size = batch_size
    self._last = (None, None)

  def images(self, images) -> np.ndarray:
    if self._last[0] is images:
      return self._last[1]
    size = self.config.vision.image_size
    embeddings = np.concatenate(
      [
        np.asarray(
          self.clip.encode_image(
            self.vision_params, self.clip.preprocess_images(images[i : i + self.batch_size], size), self.config
          )
        )
        for i in range(0, len(images), self.batch_size)
      ]
    )
    self._last = (images, embeddings)
    return embeddings

  def texts(self, captions) -> np.ndarray:
    length = min(77, self.config.text.max_position_embeddings)
    ids = self.tokenizer(list(captions), padding='max_length', max_length=length, truncation=True, return_tensors='np')[
      'input_ids'
    ]
    return np.concatenate(
      [
        np.asarray(self.clip.encode_text(self.text_params, ids[i : i + self.batch_size], self.config))
        for i in range(0, len(ids), self.batch_size)
      ]
    )


@functools.cache
def _load(path: str) -> ClipFeatures:
  return ClipFeatures(path)


def clip_features(config) -> ClipFeatures:
  """The CLIP of `config.eval.clip_weights` (loaded once per process), or Unavailable saying why not."""
  setting = config.eval.get('clip_weights')
  if not setting:
    raise Unavailable('eval.clip_weights is not set (a HF CLIP safetensors dir)')
  path = resolve_path(setting)
  if not (path / 'config.json').is_file():
    raise Unavailable(f'no CLIP checkpoint (config.json) at {path}')
  return _load(str(path))

"""CLIP score: cosine similarity of L2-normalised CLIP image and text embeddings.

Raw cosine: the ~0.25-scale number text-to-image papers report. NOT Hessel et al.'s CLIPScore ``2.5·max(cos, 0)`` and not torchmetrics'
``100·max(cos, 0)``: no scale factor and no clamp at 0. Multiply the mean by 100 for the torchmetrics scale
(when all cosines are positive).
"""

from __future__ import annotations

import numpy as np

__all__ = ['clip_score']


def clip_score(image_embeds, text_embeds):
  """Row-wise cosine of paired (N, D) embeddings (unnormalised is fine; normalised here, float64).

  Returns ``(mean: float, per_item: np.ndarray (N,))``.
  """
  a = np.asarray(image_embeds, np.float64)
  b = np.asarray(text_embeds, np.float64)
  if a.ndim != 2 or a.shape != b.shape or a.shape[0] == 0:
    raise ValueError(f'need paired (N>0, D) embeddings, got {a.shape} and {b.shape}')
  a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
  b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
  per_item = np.sum(a * b, axis=-1)
  return float(per_item.mean()), per_item

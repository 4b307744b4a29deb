"""CLIP-S: the cosine of CLIP image and caption embeddings per image (metrics/clip_score.py).

Reads `config.eval.clip_weights` (a HF CLIP safetensors dir with its tokenizer files).
"""

from tcts_jax.evaluation.evaluators import Column, Evaluator as Base
from tcts_jax.evaluation.evaluators._clip import clip_features
from tcts_jax.metrics.clip_score import clip_score


class Evaluator(Base):
  name = 'clip_score'
  columns = (Column('clip_score', 'CLIP-S', 1.0, 4),)
  compared = ('clip_score',)
  description = 'CLIP-S: cosine of CLIP image and caption embeddings (not scaled by 100 or 2.5).'

  def __init__(self, ctx):
    super().__init__(ctx)
    self.clip = clip_features(ctx.config)
    self.texts = self.clip.texts(ctx.held_out.captions)

  def per_image(self, images, example) -> dict:
    return {'clip_score': clip_score(self.clip.images(images), self.texts[example])[1]}

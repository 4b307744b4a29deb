"""MID (Kim et al. 2022): mutual information divergence of CLIP image and caption features (metrics/mid.py).

Reads `config.eval.clip_weights` and `config.eval.mid_eps` (a ridge on the covariances; the reference
suggests it below ~30k samples). Real image features: the held-out image of each generated image's caption.
"""

from tcts_jax.evaluation.evaluators import Column, Evaluator as Base
from tcts_jax.evaluation.evaluators._clip import clip_features
from tcts_jax.metrics.mid import mid


class Evaluator(Base):
  name = 'mid'
  columns = (Column('mid', 'MID', 1.0, 2),)

  def __init__(self, ctx):
    super().__init__(ctx)
    self.clip, self.eps = clip_features(ctx.config), ctx.config.eval.mid_eps
    self.description = f'MID with CLIP features, ridge eps={self.eps}.'
    self.real = self.clip.images(ctx.held_out.images)
    self.texts = self.clip.texts(ctx.held_out.captions)

  def per_row(self, images, example) -> dict:
    return {'mid': mid(self.real[example], self.texts[example], self.clip.images(images), eps=self.eps)[0]}

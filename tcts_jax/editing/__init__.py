"""Refinement, mask-free editing and in/outpainting (paper §4.2–4.3): choose positions, re-mask them,
regenerate them with the one sampler, every other position locked. See `operations.py`.

  from tcts_jax import editing
  t2i = TextToImage.load()
  tokens = t2i.tokenize_images(editing.load_image('in.png', 32).pixels[None])
  out = editing.edit(t2i, tokens, 'a large blue circle in the middle', 'blue', jax.random.key(0))
  out.images, out.tokens, out.remasked
"""

from tcts_jax.editing.images import ALPHA_BACKGROUND, LoadedImage, load_image, parse_rect, rect_to_token_mask
from tcts_jax.editing.jobs import comparison, open_job, save_comparison
from tcts_jax.editing.operations import (
  CHOOSERS,
  EditResult,
  annealed_noise,
  choose,
  count_for,
  edit,
  edit_weights,
  has_selector,
  inpaint,
  refine_masked,
  refine_revision,
  refine_upsampled,
  regenerate,
  require_selector,
  selector_cross_attention,
  selector_logits,
  word_attention,
)

__all__ = [
  'ALPHA_BACKGROUND',
  'CHOOSERS',
  'EditResult',
  'LoadedImage',
  'annealed_noise',
  'choose',
  'comparison',
  'count_for',
  'edit',
  'edit_weights',
  'has_selector',
  'inpaint',
  'load_image',
  'open_job',
  'parse_rect',
  'rect_to_token_mask',
  'refine_masked',
  'refine_revision',
  'refine_upsampled',
  'regenerate',
  'require_selector',
  'save_comparison',
  'selector_cross_attention',
  'selector_logits',
  'word_attention',
]

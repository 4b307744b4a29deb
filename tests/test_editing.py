"""Refinement, mask-free editing and in/outpainting (paper §4.2–4.3): only re-masked tokens may change.

API tests run on the tiny config with random weights (the properties hold for any weights), including a
random selector; CLI smoke runs use the `tiny_weights` fixture, which has no selector.
"""

import jax
import numpy as np
import pytest
from PIL import Image

from tcts_jax import editing
from tcts_jax.api import TextToImage
from tests.conftest import run_cli

TINY = '--config=configs/shapes.py:sample,tiny'
PROMPT = 'a large red circle in the middle'
NEW_PROMPT = 'a large blue circle in the middle'


@pytest.fixture(scope='module')
def t2i(tiny_model):
  config, models, params = tiny_model
  assert 'selector' in params  # the tiny config has a selector section, so init_params made one
  return TextToImage(config, models, params)


@pytest.fixture(scope='module')
def t2i_no_selector(t2i):
  return TextToImage(t2i.config, t2i.models, {k: v for k, v in t2i.params.items() if k != 'selector'})


@pytest.fixture(scope='module')
def tokens(t2i):
  return np.random.default_rng(0).integers(
    0, t2i.models.generator.codebook_size, (2, t2i.models.num_tokens), dtype=np.int32
  )


def changed(before, result):
  return np.asarray(result.tokens) != before


# ----------------------------------------------------------------------------- pure pieces


def test_load_image_converts_and_resizes(tmp_path):
  rgba = np.zeros((40, 48, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 255, 255
  rgba[:10, :, 3] = 0  # a transparent band
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
  image = editing.load_image(tmp_path / 'a.png', 32)
  assert image.pixels.shape == (32, 32, 3) and image.pixels.dtype == np.uint8
  assert image.original_size == (48, 40)
  assert any('converted RGBA to RGB' in n for n in image.notes)
  assert any('resized 48x40 to 32x32' in n and 'aspect ratio not kept' in n for n in image.notes)
  np.testing.assert_array_equal(image.pixels[-1, 0], [255, 0, 0])
  np.testing.assert_array_equal(image.pixels[0, 0], editing.ALPHA_BACKGROUND)
  Image.fromarray(np.full((32, 32), 7, np.uint8), 'L').save(tmp_path / 'g.png')
  grey = editing.load_image(tmp_path / 'g.png', 32)
  assert grey.notes == ['converted L to RGB'] and (grey.pixels == 7).all()
  Image.fromarray(rgba[:32, :32, :3]).save(tmp_path / 'ok.png')
  assert editing.load_image(tmp_path / 'ok.png', 32).notes == []
  (tmp_path / 'bad.png').write_bytes(b'not an image')
  with pytest.raises(ValueError, match='cannot read image'):
    editing.load_image(tmp_path / 'bad.png', 32)
  with pytest.raises(FileNotFoundError, match='image not found'):
    editing.load_image(tmp_path / 'none.png', 32)


def test_rect_to_token_mask():
  mask = editing.rect_to_token_mask((8, 8, 24, 24), 8, 32, 32).reshape(8, 8)
  expected = np.zeros((8, 8), bool)
  expected[2:6, 2:6] = True
  np.testing.assert_array_equal(mask, expected)
  # A 1-pixel rectangle still covers its token; coordinates scale with the input image's size.
  assert editing.rect_to_token_mask((0, 0, 1, 1), 8, 32, 32).sum() == 1
  np.testing.assert_array_equal(editing.rect_to_token_mask((16, 16, 48, 48), 8, 64, 64).reshape(8, 8), expected)
  assert editing.parse_rect('1,2,3,4') == (1, 2, 3, 4)
  for bad in ('1,2,3', 'a,b,c,d', '1,2,3,4,5'):
    with pytest.raises(ValueError, match='x0,y0,x1,y1'):
      editing.parse_rect(bad)
  for bad in ((8, 8, 8, 24), (0, 0, 33, 10), (-1, 0, 4, 4)):
    with pytest.raises(ValueError, match='bad rectangle'):
      editing.rect_to_token_mask(bad, 8, 32, 32)


def test_choose_top_k_without_noise_and_never_a_zero_weight():
  logits = jax.random.normal(jax.random.key(0), (3, 20))
  chosen = np.asarray(editing.choose(jax.random.key(1), logits, 5, 0.0))
  top = np.argsort(-np.asarray(logits), axis=1)[:, :5]
  for row, t in zip(chosen, top):
    assert set(np.flatnonzero(row)) == set(t)
  # -inf (weight 0) is never chosen, and the count is capped by the positions that remain.
  logits = np.full((2, 20), -np.inf, np.float32)
  logits[0, [3, 7]] = 0.0
  chosen = np.asarray(editing.choose(jax.random.key(2), logits, 5, 1.0))
  assert set(np.flatnonzero(chosen[0])) == {3, 7} and not chosen[1].any()
  assert editing.annealed_noise(1.0, 3, 4) == 0.0 and editing.annealed_noise(1.0, 0, 4) == 0.75


def test_word_mask_errors(t2i):
  words = t2i.models.text_tokenizer
  assert np.flatnonzero(words.word_mask(NEW_PROMPT, 'BLUE')).tolist() == [2]
  assert np.flatnonzero(words.word_mask(NEW_PROMPT, 4)).tolist() == [4]
  with pytest.raises(ValueError, match="word 'green' is not in the prompt"):
    words.word_mask(NEW_PROMPT, 'green')
  with pytest.raises(ValueError, match='one word'):
    words.word_mask(NEW_PROMPT, 'blue circle')
  with pytest.raises(ValueError, match='out of range'):
    words.word_mask(NEW_PROMPT, 7)


# --------------------------------------------------------------------- refinement and editing


@pytest.mark.parametrize('chooser', ['selector', 'random'])
def test_refine_revision_changes_only_remasked_tokens(t2i, tokens, chooser):
  out = editing.refine_revision(
    t2i, tokens, PROMPT, jax.random.key(0), rounds=2, fraction=0.25, chooser=chooser, steps=4
  )
  count = round(0.25 * t2i.models.num_tokens)
  assert ((out.remasked.sum(1) >= count) & (out.remasked.sum(1) <= 2 * count)).all()
  assert not (changed(tokens, out) & ~out.remasked).any()
  assert changed(tokens, out).any()  # random weights regenerate different tokens
  assert out.images.shape == (2, 32, 32, 3) and out.images.dtype == np.uint8
  assert (out.weights is None) == (chooser == 'random')


def test_refine_masked_remasks_the_highest_selector_logits(t2i, tokens):
  out = editing.refine_masked(t2i, tokens, PROMPT, jax.random.key(0), fraction=0.6, chooser='selector', noise=0.0)
  n = t2i.models.num_tokens
  assert (out.remasked.sum(1) == round(0.6 * n)).all()
  scores = editing.selector_logits(t2i, tokens, t2i.encode_prompts([PROMPT] * 2), 0.6)
  np.testing.assert_allclose(out.weights, scores, rtol=1e-5, atol=1e-5)
  for row, s in zip(out.remasked, scores):
    assert set(np.flatnonzero(row)) == set(np.argsort(-s)[: round(0.6 * n)])
  assert not (changed(tokens, out) & ~out.remasked).any()
  rand = editing.refine_masked(t2i, tokens, PROMPT, jax.random.key(1), chooser='random')
  assert (rand.remasked.sum(1) == round(0.6 * n)).all() and not (changed(tokens, rand) & ~rand.remasked).any()


def test_selector_chooser_without_selector_weights(t2i_no_selector, tokens):
  for fn in (editing.refine_masked, editing.refine_revision):
    with pytest.raises(ValueError, match='needs TCTS selector weights.*--chooser=random'):
      fn(t2i_no_selector, tokens, PROMPT, jax.random.key(0))
  with pytest.raises(ValueError, match='unknown chooser'):
    editing.refine_masked(t2i_no_selector, tokens, PROMPT, jax.random.key(0), chooser='best')


def test_edit_with_zero_attention_changes_nothing(t2i, tokens):
  out = editing.edit(t2i, tokens, NEW_PROMPT, 'blue', jax.random.key(0), attention=np.zeros(tokens.shape))
  assert not out.remasked.any()
  np.testing.assert_array_equal(out.tokens, tokens)


def test_edit_changes_only_where_remasked(t2i, t2i_no_selector, tokens):
  n = t2i.models.num_tokens
  out = editing.edit(t2i, tokens, NEW_PROMPT, 'blue', jax.random.key(0), noise=0.25, steps=10)
  assert (out.remasked.sum(1) == round(0.25 * n)).all() and out.notes == []
  assert not (changed(tokens, out) & ~out.remasked).any() and changed(tokens, out).any()
  # The attention map restricts the choice: only its support can be re-masked (count capped to it).
  attention = np.zeros(tokens.shape, np.float32)
  attention[:, [5, 9, 40]] = [0.2, 0.5, 0.3]
  out = editing.edit(t2i_no_selector, tokens, NEW_PROMPT, 'blue', jax.random.key(1), attention=attention)
  assert (np.flatnonzero(out.remasked[0]) == [5, 9, 40]).all() and (out.remasked.sum(1) == 3).all()
  assert not (changed(tokens, out) & ~out.remasked).any()
  assert any('cross-attention map alone' in note for note in out.notes)


def test_edit_word_not_in_prompt(t2i, tokens):
  with pytest.raises(ValueError, match="word 'blue' is not in the prompt"):
    editing.edit(t2i, tokens, PROMPT, 'blue', jax.random.key(0))


def test_inpaint_and_outpaint_keep_the_locked_side(t2i, tokens):
  region = editing.rect_to_token_mask((8, 8, 24, 24), t2i.models.grid_size, 32, 32)
  inside = editing.inpaint(t2i, tokens, PROMPT, region, jax.random.key(0), strategy='uniform', steps=8)
  assert not (changed(tokens, inside) & ~region).any() and changed(tokens, inside).any()
  outside = editing.inpaint(t2i, tokens, PROMPT, region, jax.random.key(0), outpaint=True, strategy='uniform', steps=8)
  assert not (changed(tokens, outside) & region).any() and changed(tokens, outside).any()
  np.testing.assert_array_equal(outside.remasked, np.broadcast_to(~region, tokens.shape))
  with pytest.raises(ValueError, match='empty mask'):
    editing.inpaint(t2i, tokens, PROMPT, np.zeros(region.shape, bool), jax.random.key(0))
  with pytest.raises(ValueError, match='empty mask.*outpaint'):
    editing.inpaint(t2i, tokens, PROMPT, np.ones(region.shape, bool), jax.random.key(0), outpaint=True)


# --------------------------------------------------------------------------------------- CLIs


@pytest.fixture(scope='module')
def input_png(tmp_path_factory):
  """A 64x64 RGBA image (so the CLI has to convert and resize it): a red disk on grey."""
  yy, xx = np.mgrid[:64, :64]
  image = np.full((64, 64, 4), 128, np.uint8)
  image[..., 3] = 255
  image[(yy - 32) ** 2 + (xx - 32) ** 2 < 15**2, :3] = (220, 30, 30)
  path = tmp_path_factory.mktemp('edit_input') / 'in.png'
  Image.fromarray(image, 'RGBA').save(path)
  return path


def assert_comparison_png(path):
  panel = np.asarray(Image.open(path))
  assert panel.ndim == 3 and panel.shape[1] >= 3 * 32 * 4  # before | re-masked | after, upscaled


def test_refine_cli(tiny_weights, input_png, tmp_path):
  out = tmp_path / 'refined.png'
  r = run_cli(
    'tcts_jax.refine',
    TINY,
    f'--weights={tiny_weights}',
    f'--image={input_png}',
    f'--prompt={PROMPT}',
    f'--out={out}',
    '--chooser=random',
    '--rounds=2',
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'converted RGBA to RGB' in r.stdout and 'resized 64x64 to 32x32' in r.stdout and 'wrote' in r.stdout
  assert_comparison_png(out)


@pytest.mark.parametrize(
  'args',
  [
    [f'--prompt={NEW_PROMPT}', '--word=blue'],
    [f'--prompt={PROMPT}', '--outpaint=16,16,48,48', '--steps=8'],
  ],
)
def test_edit_cli(tiny_weights, input_png, tmp_path, args):
  out = tmp_path / 'edited.png'
  r = run_cli('tcts_jax.edit', TINY, f'--weights={tiny_weights}', f'--image={input_png}', f'--out={out}', *args)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'wrote' in r.stdout
  if '--word=blue' in args:
    assert 'cross-attention map alone' in r.stdout  # tiny_weights has no selector
  assert_comparison_png(out)

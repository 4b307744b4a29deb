"""Frozen CLIP text conditioning (text.encoder='clip', tcts_jax/models/text.py) on the tiny random CLIP the
tests ship: the tokenizer is CLIP's, the features are the tower's, the padding after the end token cannot
reach the generator, the generator stage never trains or saves the tower, and export makes a weights dir that
samples and edits on its own."""

import jax
import numpy as np
import pytest
from transformers import CLIPTokenizer

from tcts_jax.api import TextToImage
from tcts_jax.models import abstract_params, build_models, init_params, load_text_params
from tcts_jax.models.clip import CLIPTextTower, load_clip_from_safetensors
from tcts_jax.models.text import ClipTextEncoder, ClipTokenizer
from tcts_jax.sampling.model import conditional_rows
from tcts_jax.training.trainer import train_and_evaluate
from tcts_jax.utils import checkpoint
from tcts_jax.utils.compilation import jit_one_off
from tests.conftest import REPO, run_cli
from tests.test_train import tiny

CLIP_DIR = REPO / 'tests/fixtures/tiny_clip'
LENGTH = 16  # the tiny tower's positions
PROMPT = 'a red circle left of a blue square'


def with_clip(config):
  with config.unlocked():
    config.text.update(encoder='clip', clip_dir=str(CLIP_DIR), max_length=LENGTH)
  return config


@pytest.fixture(scope='module')
def clip_params():
  return {'clip': load_clip_from_safetensors(str(CLIP_DIR))[1]}


def test_the_text_side_is_clips_tokenizer_and_last_hidden_states(tiny_data_dir, clip_params):
  models = build_models(with_clip(tiny('generator', tiny_data_dir)), vocabulary=[])
  assert isinstance(models.text_tokenizer, ClipTokenizer) and isinstance(models.text_encoder, ClipTextEncoder)
  assert models.text_encoder.width == 32 and models.generator.text_width == 32  # the tower's width, not text.width
  hf = CLIPTokenizer.from_pretrained(str(CLIP_DIR), local_files_only=True)
  ids = models.text_tokenizer.encode_batch([PROMPT, 'blue'])
  np.testing.assert_array_equal(ids, hf([PROMPT, 'blue'], padding='max_length', max_length=LENGTH).input_ids)
  states, mask = models.text_encoder.apply({'params': clip_params}, ids)
  tower = CLIPTextTower(models.text_encoder.config).apply({'params': clip_params['clip']}, ids, hidden_states=True)
  np.testing.assert_array_equal(states, tower['last_hidden_state'])
  end = [row.tolist().index(hf.eos_token_id) for row in ids]  # the first end token: padding repeats it
  np.testing.assert_array_equal(mask, np.arange(LENGTH)[None] <= np.array(end)[:, None])
  # Editing finds a word's BPE pieces after the start token; BPE has no unknown words.
  blue = models.text_tokenizer.word_mask(PROMPT, 'blue')
  pieces = len(hf('blue', add_special_tokens=False).input_ids)
  assert np.flatnonzero(blue).tolist() == list(range(7, 7 + pieces))
  assert models.text_tokenizer.unknown_words('a zebra') == []
  assert models.text_tokenizer.dropped(['a red circle ' * 8]) == [len(hf('a red circle ' * 8).input_ids) - LENGTH]


def test_what_follows_the_end_token_cannot_reach_the_generator(tiny_data_dir, clip_params):
  """The causal tower and the mask: any ids after the first end token give the same generator logits."""
  models = build_models(with_clip(tiny('generator', tiny_data_dir)), vocabulary=[])
  params = {**jit_one_off(lambda key: init_params(models, 32, key))(jax.random.key(0)), 'text': clip_params}
  ids = models.text_tokenizer.encode_batch([PROMPT])
  end = ids[0].tolist().index(models.text_encoder.config.eos_token_id)
  other = ids.copy()
  other[0, end + 1 :] = np.random.default_rng(0).integers(0, 92, LENGTH - end - 1)
  tokens = np.random.default_rng(1).integers(0, models.mask_id + 1, (1, models.num_tokens))
  g = models.masked_generator()

  @jax.jit
  def logits(text_ids):  # the conditional rows
    return g.logits(params, tokens, conditional_rows(g.encode_text(params, text_ids, None), 1), None)[0]

  np.testing.assert_array_equal(logits(ids), logits(other))
  changed = ids.copy()
  changed[0, 2] = (changed[0, 2] + 1) % 92  # a real token does reach it
  assert not np.array_equal(logits(ids), logits(changed))


def test_the_generator_stage_freezes_clip_and_export_makes_a_weights_dir_of_its_own(
  tiny_data_dir, tiny_weights, clip_params, tmp_path
):
  config = with_clip(tiny('generator', tiny_data_dir, num_steps=2, log_every=1, image_every=0, checkpoint_every=2))
  with config.unlocked():
    config.tokenizer_checkpoint = str(tiny_weights)
  state, history = train_and_evaluate(config, tmp_path / 'generator')
  assert set(state.params) == {'generator'} and np.isfinite(history[-1][1]['loss'])
  assert set(checkpoint.latest_params(tmp_path / 'generator')) == {'generator'}  # the tower is never saved
  expected = abstract_params(build_models(config, []), 32)['text']
  from_workdir = load_text_params(config, tmp_path / 'generator', expected)  # what the selector stage reads
  jax.tree.map(np.testing.assert_array_equal, from_workdir, clip_params)

  r = run_cli(
    'tcts_jax.export',
    '--config=configs/shapes.py:sample,tiny',
    '--config.text.encoder=clip',
    f'--config.text.clip_dir={CLIP_DIR}',
    f'--config.text.max_length={LENGTH}',
    f'--tokenizer={tiny_weights}',
    f'--generator={tmp_path / "generator"}',
    f'--out={tmp_path / "weights"}',
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert (tmp_path / 'weights/clip_text/config.json').is_file() and not (tmp_path / 'weights/vocab.json').exists()

  sample_config = with_clip(tiny('sample', tiny_data_dir))
  with sample_config.unlocked():
    sample_config.text.clip_dir = None  # the weights dir alone: its clip_text/ and text.safetensors
    sample_config.sampler.steps = 4
  t2i = TextToImage.load(sample_config, weights=str(tmp_path / 'weights'))
  jax.tree.map(np.testing.assert_array_equal, t2i.params['text'], clip_params)
  out = t2i.generate(['a zebra by a circle'], seed=0)  # any words: CLIP's BPE reads them
  assert out.images.shape == (1, 32, 32, 3) and (out.tokens < t2i.models.mask_id).all()
  assert t2i.word_mask('a zebra by a circle', 'zebra').any()

"""Flax CLIP towers vs. transformers reference outputs stored in tests/fixtures (no torch needed).

Fixture made by tests/fixtures/make_tiny_clip.py (tiny random CLIPModel, transformers 5.23, torch 2.13).
"""

import dataclasses
import json
import os
import shutil

os.environ.setdefault('USE_TF', '0')

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tcts_jax.models.clip import CLIPConfig, encode_image, encode_text, load_clip_from_safetensors, preprocess_images

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
CLIP_DIR = os.path.join(FIX, 'tiny_clip')


@pytest.fixture(scope='module')
def ref():
  return dict(np.load(os.path.join(FIX, 'tiny_clip_reference.npz')))


@pytest.fixture(scope='module')
def loaded():
  return load_clip_from_safetensors(CLIP_DIR)


def _images(ref):
  out, o = [], 0
  for s in ref['image_shapes']:
    n = int(np.prod(s))
    out.append(ref['images_flat'][o : o + n].reshape(s))
    o += n
  return out


def test_tokenizer_ids(ref):
  from transformers import CLIPTokenizer

  tok = CLIPTokenizer.from_pretrained(CLIP_DIR)
  ids = tok(
    [str(c) for c in ref['captions']],
    padding='max_length',
    max_length=ref['input_ids'].shape[1],
    truncation=True,
    return_tensors='np',
  )['input_ids']
  np.testing.assert_array_equal(ids, ref['input_ids'])


def test_config(loaded):
  cfg, tp, vp = loaded
  assert cfg.text.hidden_size == 32 and cfg.text.num_hidden_layers == 2 and cfg.text.projection_dim == 16
  assert cfg.vision.image_size == 32 and cfg.vision.patch_size == 8
  assert tp is not None and vp is not None


def test_text_parity(loaded, ref):
  cfg, tp, _ = loaded
  out = np.asarray(encode_text(tp, ref['input_ids'], cfg))
  np.testing.assert_allclose(out, ref['text_embeds'], atol=1e-5, rtol=1e-5)
  # legacy eos_token_id == 2 path (argmax of ids) agrees here since EOS is the largest id
  legacy = dataclasses.replace(cfg.text, eos_token_id=2)
  np.testing.assert_allclose(np.asarray(encode_text(tp, ref['input_ids'], legacy)), out, atol=1e-6)


def test_preprocess_parity(ref):
  pv = preprocess_images(_images(ref), 32)
  assert pv.shape == (3, 32, 32, 3) and pv.dtype == np.float32
  np.testing.assert_allclose(pv, ref['pixel_values'].transpose(0, 2, 3, 1), atol=1e-6)


def test_image_parity(loaded, ref):
  cfg, _, vp = loaded
  out = np.asarray(encode_image(vp, ref['pixel_values'].transpose(0, 2, 3, 1), cfg))
  np.testing.assert_allclose(out, ref['image_embeds'], atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match='expects 32x32'):
    encode_image(vp, np.zeros((1, 16, 16, 3), np.float32), cfg)


def _write(tmp, tensors, config):
  os.makedirs(tmp, exist_ok=True)
  save_file(tensors, os.path.join(tmp, 'model.safetensors'))
  with open(os.path.join(tmp, 'config.json'), 'w') as f:
    json.dump(config, f)
  return str(tmp)


def test_missing_and_unused_keys_error(tmp_path):
  tensors = load_file(os.path.join(CLIP_DIR, 'model.safetensors'))
  config = json.load(open(os.path.join(CLIP_DIR, 'config.json')))
  t = dict(tensors)
  del t['text_model.encoder.layers.1.mlp.fc2.bias']
  t['text_model.extra.weight'] = np.zeros(3, np.float32)
  with pytest.raises(ValueError) as e:
    load_clip_from_safetensors(_write(tmp_path / 'bad', t, config))
  msg = str(e.value)
  assert 'missing keys (1)' in msg and 'text_model.encoder.layers.1.mlp.fc2.bias' in msg
  assert 'unused keys (1)' in msg and 'text_model.extra.weight' in msg
  # shape mismatch against config.json
  config2 = json.loads(json.dumps(config))
  config2['text_config']['intermediate_size'] = 48
  with pytest.raises(ValueError, match='fc1.weight: shape'):
    load_clip_from_safetensors(_write(tmp_path / 'bad2', tensors, config2))


def test_text_only_without_prefix(tmp_path, ref):
  """transformers-5 style single-tower file without the `text_model.` prefix."""
  tensors = load_file(os.path.join(CLIP_DIR, 'model.safetensors'))
  full = json.load(open(os.path.join(CLIP_DIR, 'config.json')))
  t = {k[len('text_model.') :]: v for k, v in tensors.items() if k.startswith('text_model.')}
  t['text_projection.weight'] = tensors['text_projection.weight']
  cfg_json = dict(full['text_config'], architectures=['CLIPTextModelWithProjection'])
  path = _write(tmp_path / 'text', t, cfg_json)
  cfg, tp, vp = load_clip_from_safetensors(os.path.join(path, 'model.safetensors'))
  assert isinstance(cfg, CLIPConfig) and cfg.vision is None and vp is None
  out = np.asarray(encode_text(tp, ref['input_ids'], cfg))
  np.testing.assert_allclose(out, ref['text_embeds'], atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match='no vision tower'):
    encode_image(tp, np.zeros((1, 32, 32, 3), np.float32), cfg)


def test_missing_files(tmp_path):
  with pytest.raises(FileNotFoundError):
    load_clip_from_safetensors(str(tmp_path))
  shutil.copy(os.path.join(CLIP_DIR, 'model.safetensors'), tmp_path / 'model.safetensors')
  with pytest.raises(FileNotFoundError, match='config.json'):
    load_clip_from_safetensors(str(tmp_path))

"""The Flax aMUSEd VQGAN vs. diffusers' VQModel reference outputs stored in tests/fixtures (no torch needed).

Fixture made by tests/fixtures/make_tiny_amused.py (tiny random VQModel, diffusers 0.42.1, torch 2.13): 32x32
images, an 8x8 token grid, 64 codes; the reference arrays are NCHW, ours NHWC.
"""

import json
import os
import pickle
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.models.amused.vqgan import VQConfig, VQModel, init_shapes, load_vqgan

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
VQ_DIR = os.path.join(FIX, 'tiny_amused', 'vqvae')
GRID = (8, 8)
TOL = 1e-4


def nhwc(a):
  return np.asarray(a).transpose(0, 2, 3, 1)


@pytest.fixture(scope='module')
def ref():
  return dict(np.load(os.path.join(FIX, 'tiny_amused_reference.npz')))


@pytest.fixture(scope='module')
def loaded():
  return load_vqgan(VQ_DIR)


@pytest.fixture(scope='module')
def fns(loaded):
  """Jitted (params, ...) functions, compiled once per dtype for the whole file."""
  model = VQModel(loaded[0])
  return {
    'latents': jax.jit(lambda p, x: model.apply(p, x, method=VQModel.encode_latents)),
    'indices': jax.jit(lambda p, x: model.apply(p, x, method=VQModel.encode_indices)),
    'decode': jax.jit(lambda p, i: model.apply(p, i, GRID, method=VQModel.decode_indices)),
  }


def test_config_matches_the_fixture(loaded):
  config, params = loaded
  assert config.block_out_channels == (8, 16, 16) and config.latent_channels == 8 and config.num_vq_embeddings == 64
  assert config.lookup_from_codebook and not config.mid_block_add_attention
  assert config.downsample_factor == 4 and VQModel(config).downsample_factor == 4
  assert params['params']['quantize']['embedding']['embedding'].shape == (64, 8)


def test_config_rejects_unknown_and_unsupported_values():
  with open(os.path.join(VQ_DIR, 'config.json')) as f:
    d = json.load(f)
  assert VQConfig.from_json_dict({**d, '_name_or_path': 'x'}) == VQConfig.from_json_dict(d)
  with pytest.raises(ValueError, match='conv_size'):
    VQConfig.from_json_dict({**d, 'conv_size': 3})
  with pytest.raises(ValueError, match='spatial'):
    VQConfig.from_json_dict({**d, 'norm_type': 'spatial'})
  with pytest.raises(ValueError, match='AttnDownEncoderBlock2D'):
    VQConfig.from_json_dict({**d, 'down_block_types': ['AttnDownEncoderBlock2D'] * 3})
  with pytest.raises(ValueError, match='act_fn'):
    VQConfig.from_json_dict({**d, 'act_fn': 'tanh'})


def test_latents_match_diffusers(loaded, fns, ref):
  latents = fns['latents'](loaded[1], nhwc(ref['vq_images']))
  assert latents.shape == (2, 8, 8, 8)
  assert np.abs(np.asarray(latents) - nhwc(ref['vq_latents'])).max() <= TOL


def test_indices_match_diffusers(loaded, fns, ref):
  indices = fns['indices'](loaded[1], nhwc(ref['vq_images']))
  assert indices.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(indices), ref['vq_indices'])


@pytest.mark.parametrize('which', ['', 'random_'])
def test_decode_matches_diffusers(loaded, fns, ref, which):
  images = fns['decode'](loaded[1], ref[f'vq_{which}indices'].astype(np.int32))
  assert images.shape == (2, 32, 32, 3)
  assert np.abs(np.asarray(images) - nhwc(ref[f'vq_{which}decoded'])).max() <= TOL


def test_decode_checks_the_grid(loaded, ref):
  model = VQModel(loaded[0])
  with pytest.raises(ValueError, match='4x4 grid'):
    model.apply(loaded[1], ref['vq_indices'].astype(np.int32), (4, 4), method=VQModel.decode_indices)


def test_bf16_decode_is_close_to_fp32(fns, ref):
  _, params = load_vqgan(VQ_DIR, dtype=jnp.bfloat16)
  assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(params))
  images = fns['decode'](params, ref['vq_indices'].astype(np.int32))
  assert images.dtype == jnp.bfloat16
  err = np.abs(np.asarray(images, np.float32) - nhwc(ref['vq_decoded']))
  assert err.max() <= 0.15 and err.mean() <= 0.02  # measured: 0.06 and 0.008 (outputs span about +-2.5)


def test_attention_mid_block_is_named_like_diffusers():
  """The mid-block attention's params sit where diffusers' keys (`mid_block.attentions.0.to_out.0`) map them."""
  blocks = {'down_block_types': ('DownEncoderBlock2D',) * 2, 'up_block_types': ('UpDecoderBlock2D',) * 2}
  shapes = init_shapes(VQConfig(**blocks, block_out_channels=(8, 16), norm_num_groups=4, latent_channels=4))
  attention = shapes['decoder']['mid_block']['attentions_0']
  assert sorted(attention) == ['group_norm', 'to_k', 'to_out_0', 'to_q', 'to_v']
  assert attention['to_out_0']['kernel'].shape == (16, 16)


def _copy_vqvae(tmp_path, **config_changes):
  directory = tmp_path / 'vqvae'
  shutil.copytree(VQ_DIR, directory)
  with open(directory / 'config.json') as f:
    config = json.load(f)
  with open(directory / 'config.json', 'w') as f:
    json.dump({**config, **config_changes}, f)
  return directory


def test_weights_that_do_not_fit_the_config_name_their_keys(tmp_path):
  with pytest.raises(ValueError, match='encoder.conv_out.weight') as error:
    load_vqgan(str(_copy_vqvae(tmp_path, latent_channels=16)))
  assert 'post_quant_conv.weight' in str(error.value)


class _WritesWhenUnpickled:
  """A pickle that, if ever loaded, creates the file `path` (pickled weights must never be loaded)."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return open, (self.path, 'w')


def test_pickled_weights_are_never_loaded(tmp_path):
  directory = _copy_vqvae(tmp_path)
  os.remove(directory / 'diffusion_pytorch_model.safetensors')
  marker = tmp_path / 'unpickled'
  with open(directory / 'diffusion_pytorch_model.bin', 'wb') as f:
    pickle.dump(_WritesWhenUnpickled(str(marker)), f)
  with pytest.raises(FileNotFoundError, match='safetensors'):
    load_vqgan(str(directory))
  assert not marker.exists()

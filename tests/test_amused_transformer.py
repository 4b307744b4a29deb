"""Flax UVit2D (aMUSEd's transformer) vs. diffusers 0.42.1 ``UVit2DModel`` outputs stored in tests/fixtures.

Fixtures made by tests/fixtures/make_tiny_amused.py (no torch needed here): ``tiny_amused/transformer`` (no
down/upsampling, no biases) and ``tiny_uvit_downsampled`` (down + upsampling, biases); reference logits NCHW.
"""

import dataclasses
import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.models.amused.transformer import UVit2D, UVit2DConfig, example_inputs, lift_attention_maps, load_uvit2d

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
DIRS = {
  'plain': os.path.join(FIX, 'tiny_amused', 'transformer'),
  'downsampled': os.path.join(FIX, 'tiny_uvit_downsampled'),
}
REF_KEYS = {'plain': 'logits', 'downsampled': 'logits_downsampled'}
GRID = 8


@pytest.fixture(scope='module')
def ref():
  return dict(np.load(os.path.join(FIX, 'tiny_amused_reference.npz')))


@pytest.fixture(scope='module')
def inputs(ref):
  """(tokens (2, 8, 8), encoder_hidden_states, pooled_text_emb, micro_conds) the reference was run on."""
  return ref['tokens'].astype(np.int32), ref['text_penultimate'][:2], ref['text_embeds'][:2], ref['micro_conds']


class Loaded:
  """A loaded fixture model with its jitted entry points (each compiled once per module)."""

  def __init__(self, directory, dtype=jnp.float32):
    self.config, params = load_uvit2d(directory, dtype)
    self.params = {'params': params}  # the variables `apply` takes
    self.model = UVit2D(self.config)
    self.call = jax.jit(self.model.apply)
    self.context = jax.jit(functools.partial(self.model.apply, method=UVit2D.context))
    self.logits = jax.jit(functools.partial(self.model.apply, method=UVit2D.logits), static_argnums=3)


@pytest.fixture(scope='module')
def models():
  return {name: Loaded(directory) for name, directory in DIRS.items()}


@pytest.fixture(scope='module')
def contexts(models, inputs):
  return {name: m.context(m.params, *inputs[1:]) for name, m in models.items()}


def _reference_logits(ref, name):
  """The NCHW reference as (B, H*W, codebook), our layout."""
  logits = ref[REF_KEYS[name]]
  b, c, h, w = logits.shape
  return logits.transpose(0, 2, 3, 1).reshape(b, h * w, c)


def test_config_from_json_dict():
  with open(os.path.join(DIRS['downsampled'], 'config.json')) as f:
    d = json.load(f)
  config = UVit2DConfig.from_json_dict(d)  # `_class_name`, `_diffusers_version` ignored
  assert config.downsample and config.upsample and config.use_bias and config.hidden_size == 32
  assert config.num_micro_conds == 5
  with pytest.raises(ValueError, match='not_a_field'):
    UVit2DConfig.from_json_dict({**d, 'not_a_field': 1})


@pytest.mark.parametrize('name', ['plain', 'downsampled'])
def test_logits_match_diffusers(models, inputs, ref, name):
  m = models[name]
  got = np.asarray(m.call(m.params, *inputs))
  want = _reference_logits(ref, name)
  assert got.shape == want.shape == (2, GRID * GRID, 64)
  assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize('name', ['plain', 'downsampled'])
def test_call_is_logits_of_context(models, contexts, inputs, name):
  m, context = models[name], contexts[name]
  tokens = inputs[0]
  full = np.asarray(m.call(m.params, *inputs))
  split, maps = m.logits(m.params, tokens, context, None)
  assert maps is None
  np.testing.assert_allclose(np.asarray(split), full, atol=1e-6)
  flat, _ = m.logits(m.params, tokens.reshape(2, -1), context, None)  # (B, H*W) tokens: the same grid
  np.testing.assert_array_equal(np.asarray(flat), np.asarray(split))


def test_context_holds_every_cross_attention(models, contexts):
  context, config = contexts['downsampled'], models['downsampled'].config
  paths = [f'transformer_layers_{i}/attn2' for i in range(config.num_hidden_layers)]
  paths += [
    f'{block}/attention_blocks_{j}/{attn}'
    for block in ('down_block', 'up_block')
    for j in range(config.num_res_blocks)
    for attn in ('attn1', 'attn2')
  ]
  expected = {'encoder_hidden_states', 'cond_embeds'} | {f'{p}/{kv}' for p in paths for kv in ('key', 'value')}
  assert set(context) == expected
  assert context['encoder_hidden_states'].shape == (2, 77, config.hidden_size)
  assert context['cond_embeds'].shape == (2, config.hidden_size)
  assert context['transformer_layers_0/attn2/key'].shape == (2, 4, 77, 8)  # (B, heads, L, head_dim)
  assert context['up_block/attention_blocks_1/attn1/value'].shape == (2, 2, 77, 12)
  assert models['downsampled'].model.num_layers == config.num_hidden_layers == 2


@pytest.mark.parametrize('name', ['plain', 'downsampled'])
def test_attention_maps(models, contexts, inputs, name):
  m, context = models[name], contexts[name]
  logits, maps = m.logits(m.params, inputs[0], context, 1)
  plain_logits, _ = m.logits(m.params, inputs[0], context, None)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(plain_logits), atol=1e-6)  # the same forward pass
  self_map, cross_map = np.asarray(maps['self_attention']), np.asarray(maps['cross_attention'])
  assert self_map.shape == (2, 4, GRID * GRID, GRID * GRID) and cross_map.shape == (2, 4, GRID * GRID, 77)
  np.testing.assert_allclose(self_map.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(cross_map.sum(-1), 1.0, atol=1e-5)
  assert (self_map >= 0).all() and (cross_map >= 0).all()


def _cell_representatives(grid):
  """The fine position at the top-left of each 2x2 cell, row-major over the coarse grid."""
  rows, cols = np.meshgrid(np.arange(0, grid, 2), np.arange(0, grid, 2), indexing='ij')
  return (rows * grid + cols).reshape(-1)


def test_downsampled_maps_are_lifted_from_the_coarse_grid(models, contexts, inputs):
  """The transformer layers of the downsampled model see 4x4 tokens: its maps are the coarse ones lifted."""
  m = models['downsampled']
  _, maps = m.logits(m.params, inputs[0], contexts['downsampled'], 1)
  fine_self, fine_cross = np.asarray(maps['self_attention']), np.asarray(maps['cross_attention'])
  reps = _cell_representatives(GRID)
  coarse = {'self_attention': 4 * fine_self[:, :, reps][:, :, :, reps], 'cross_attention': fine_cross[:, :, reps]}
  np.testing.assert_allclose(coarse['self_attention'].sum(-1), 1.0, atol=1e-5)  # a softmax over 16 coarse tokens
  lifted = lift_attention_maps({k: jnp.asarray(v) for k, v in coarse.items()}, GRID, GRID)
  np.testing.assert_allclose(np.asarray(lifted['self_attention']), fine_self, atol=1e-7)
  np.testing.assert_allclose(np.asarray(lifted['cross_attention']), fine_cross, atol=1e-7)
  received_fine = fine_self.sum(2).reshape(2, 4, GRID, GRID)
  received_coarse = coarse['self_attention'].sum(2).reshape(2, 4, GRID // 2, GRID // 2)
  np.testing.assert_allclose(received_fine, np.repeat(np.repeat(received_coarse, 2, 2), 2, 3), atol=1e-5)


def test_lift_attention_maps_odd_grid():
  """A 5x5 grid downsamples to 3x3 (edge cells hold 2 or 1 positions): rows still sum to one."""
  rng = np.random.default_rng(0)
  coarse, cross = rng.random((1, 2, 9, 9)), rng.random((1, 2, 9, 6))
  coarse, cross = coarse / coarse.sum(-1, keepdims=True), cross / cross.sum(-1, keepdims=True)
  lifted = lift_attention_maps({'self_attention': jnp.asarray(coarse), 'cross_attention': jnp.asarray(cross)}, 5, 5)
  assert lifted['self_attention'].shape == (1, 2, 25, 25) and lifted['cross_attention'].shape == (1, 2, 25, 6)
  np.testing.assert_allclose(np.asarray(lifted['self_attention']).sum(-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(lifted['cross_attention'])[:, :, 24], np.asarray(cross)[:, :, 8])


def test_attention_layer_index(models, contexts, inputs):
  m, context = models['plain'], contexts['plain']
  _, last = m.logits(m.params, inputs[0], context, 1)
  _, negative = m.logits(m.params, inputs[0], context, -1)
  np.testing.assert_array_equal(np.asarray(last['self_attention']), np.asarray(negative['self_attention']))
  with pytest.raises(ValueError, match='attention_layer'):
    m.model.apply(m.params, inputs[0], context, 2, method=UVit2D.logits)


def _weights_with_config(tmp_path, weights_dir, config: dict):
  shutil.copy(os.path.join(weights_dir, 'diffusion_pytorch_model.safetensors'), tmp_path)
  with open(os.path.join(tmp_path, 'config.json'), 'w') as f:
    json.dump(config, f)
  return str(tmp_path)


def _config_dict(name):
  with open(os.path.join(DIRS[name], 'config.json')) as f:
    return json.load(f)


def test_loader_reports_unused_keys(tmp_path):
  """The downsampled model's weights under the plain config: its biases and down/upsamplers are left over."""
  directory = _weights_with_config(tmp_path, DIRS['downsampled'], _config_dict('plain'))
  with pytest.raises(ValueError, match='unused') as error:
    load_uvit2d(directory)
  assert 'down_block.downsample.conv.weight' in str(error.value) and 'encoder_proj.bias' in str(error.value)


def test_loader_reports_missing_keys(tmp_path):
  directory = _weights_with_config(tmp_path, DIRS['plain'], _config_dict('downsampled'))
  with pytest.raises(ValueError, match='missing') as error:
    load_uvit2d(directory)
  assert 'up_block/upsample/conv/weight' in str(error.value) and 'encoder_proj/bias' in str(error.value)


def test_loader_reports_wrong_shapes(tmp_path):
  directory = _weights_with_config(tmp_path, DIRS['plain'], {**_config_dict('plain'), 'codebook_size': 65})
  with pytest.raises(ValueError, match='shape mismatch') as error:
    load_uvit2d(directory)
  assert 'mlm_layer.conv2.weight' in str(error.value)


def test_branches_without_kv_mapper_or_affine_norms():
  """Options the fixtures do not take: block width = hidden width (no kv_mapper), norms without affine."""
  config = dataclasses.replace(
    UVit2DConfig.from_json_dict(_config_dict('plain')), block_out_channels=32, ln_elementwise_affine=False
  )
  params = jax.eval_shape(UVit2D(config).init, jax.random.key(0), *example_inputs(config))['params']
  assert 'kv_mapper' not in params['down_block']['attention_blocks_0']
  assert 'norm' not in params['transformer_layers_0']['norm3'] and 'layer_norm' not in params['embed']
  assert 'scale' in params['down_block']['attention_blocks_0']['norm1']  # SkipFF's norms are always affine


def test_bfloat16_load_is_close(inputs, ref):
  m = Loaded(DIRS['downsampled'], jnp.bfloat16)
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(m.params)} == {jnp.dtype(jnp.bfloat16)}
  got = np.asarray(m.call(m.params, *inputs), np.float32)
  want = _reference_logits(ref, 'downsampled')
  assert np.abs(got - want).max() < 0.15 * np.abs(want).max()
  assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.9

"""Model shapes, attention maps, the training corruption, the word tokenizer and weight files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.utils import checkpoint
from tcts_jax.training.corruption import corrupt
from tcts_jax.models.generator import generator_forward
from tcts_jax.models.text import UnknownWordsError


def test_tokenizer_round_trip_shapes(tiny_model):
  config, models, params = tiny_model
  images = jnp.zeros((2, 32, 32, 3))
  tokens = models.tokenizer.apply({'params': params['tokenizer']}, images, method='encode')
  assert tokens.shape == (2, models.grid_size, models.grid_size) and tokens.dtype == jnp.int32
  assert int(tokens.max()) < config.tokenizer.codebook_size
  recon = models.tokenizer.apply({'params': params['tokenizer']}, tokens, method='decode')
  assert recon.shape == images.shape


def test_generator_logits_and_attention_maps(tiny_model):
  config, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(['a red circle', 'a small blue square at the top'])
  text, mask = models.text_encoder.apply({'params': params['text']}, ids)
  tokens = jnp.full((2, models.num_tokens), models.mask_id).at[:, :5].set(3)
  logits, self_attn, cross_attn = generator_forward(
    models.generator, params['generator'], tokens, text, mask, jnp.array([False, True]), attention_layer=1
  )
  assert logits.shape == (2, models.num_tokens, config.tokenizer.codebook_size)
  heads = config.generator.num_heads
  assert self_attn.shape == (2, heads, models.num_tokens, models.num_tokens)
  assert cross_attn.shape == (2, heads, models.num_tokens, config.text.max_length)
  np.testing.assert_allclose(self_attn.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(cross_attn.sum(-1), 1.0, atol=1e-5)
  # Padding words get no attention; the dropped caption attends only to the null slot.
  assert float(jnp.abs(cross_attn[0][..., ~np.asarray(mask[0])]).max()) < 1e-6
  np.testing.assert_allclose(cross_attn[1][..., 0], 1.0, atol=1e-5)
  plain, _, _ = generator_forward(models.generator, params['generator'], tokens, text, mask, jnp.array([False, True]))
  np.testing.assert_allclose(plain, logits, atol=1e-5)


def test_caption_dropout_ignores_the_caption(tiny_model):
  _, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(['a red circle', 'a small blue square at the top'])
  text, mask = models.text_encoder.apply({'params': params['text']}, ids)
  tokens = jnp.full((2, models.num_tokens), models.mask_id)
  logits = models.generator.apply({'params': params['generator']}, tokens, text, mask, jnp.array([True, True]))
  np.testing.assert_allclose(logits[0], logits[1], atol=1e-5)


def test_corruption_masks_the_drawn_fraction():
  tokens = jnp.tile(jnp.arange(64)[None] % 10, (256, 1))
  ratio = jnp.linspace(0.01, 1.0, 256)
  out, masked, replaced = corrupt(
    jax.random.key(0), tokens, mask_id=99, codebook_size=10, corrupt_prob=0.1, ratio=ratio
  )
  np.testing.assert_array_equal(masked.sum(-1), np.clip(np.ceil(np.asarray(ratio) * 64), 1, 64))
  assert (np.asarray(out)[np.asarray(masked)] == 99).all()
  assert not (masked & replaced).any()
  visible = ~masked
  assert 0.05 < replaced.sum() / visible.sum() < 0.15  # corrupt_prob of the visible tokens
  unchanged = visible & ~replaced
  np.testing.assert_array_equal(out[unchanged], tokens[unchanged])


def test_corruption_default_ratio_follows_the_cosine_schedule():
  tokens = jnp.zeros((4096, 64), jnp.int32)
  _, masked, _ = corrupt(jax.random.key(1), tokens, mask_id=5, codebook_size=5, corrupt_prob=0.0)
  frac = np.asarray(masked.mean(-1))
  # ratio = cos(pi/2 u): its mean is 2/pi; the median is cos(pi/4).
  assert abs(frac.mean() - 2 / np.pi) < 0.02
  assert abs(np.median(frac) - np.cos(np.pi / 4)) < 0.03


def test_text_tokenizer(tiny_model):
  words = tiny_model[1].text_tokenizer
  ids = words.encode('A Large RED circle')
  assert ids.shape == (words.max_length,) and (ids[:4] > 1).all() and (ids[4:] == 0).all()
  assert words.decode(ids) == 'a large red circle'
  assert words.encode('a zebra')[1] == 1  # unknown word -> [UNK]
  with pytest.raises(UnknownWordsError, match='zebra'):
    words.encode('a zebra', strict=True)
  with pytest.raises(ValueError, match='empty prompt'):
    words.encode('   ')


def test_weights_round_trip_and_clear_errors(tiny_model, tmp_path):
  _, models, params = tiny_model
  expected = jax.eval_shape(lambda: params['generator'])
  checkpoint.save_weights(tmp_path / 'g.safetensors', params['generator'])
  loaded = checkpoint.load_weights(tmp_path / 'g.safetensors', expected)
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(params['generator']))

  wrong = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[:-1] + (x.shape[-1] + 1,), x.dtype), expected)
  with pytest.raises(checkpoint.CheckpointError, match='does not match the config'):
    checkpoint.load_weights(tmp_path / 'g.safetensors', wrong)
  with pytest.raises(checkpoint.CheckpointError, match='does not match the config: missing'):
    checkpoint.load_weights(tmp_path / 'g.safetensors', {**expected, 'extra': expected['head']})
  (tmp_path / 'bad.safetensors').write_bytes(b'not a checkpoint')
  with pytest.raises(checkpoint.CheckpointError, match='corrupt checkpoint'):
    checkpoint.load_weights(tmp_path / 'bad.safetensors', expected)
  with pytest.raises(checkpoint.CheckpointError, match='not found'):
    checkpoint.load_weights(tmp_path / 'missing.safetensors', expected)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.safetensors', 'g.safetensors']  # no temp files


@pytest.mark.parametrize('masked', [False, True])
def test_heads_first_attention_is_flax_attention(masked, monkeypatch):
  """The heads-first matmuls Attention hands to flax give flax's own einsum results: outputs, sown weights and
  sown scores (with a text-style key mask: -inf scores, zero weights where it forbids)."""
  from tcts_jax.models import layers

  x = jax.random.normal(jax.random.key(0), (3, 10, 16))
  context = jax.random.normal(jax.random.key(1), (3, 7, 16))
  mask = (jnp.arange(7) < jnp.array([[3], [7], [1]]))[:, None, None, :] if masked else None
  attention = layers.Attention(num_heads=2, width=16)
  params = attention.init(jax.random.key(2), x)

  def run():
    keys_values = attention.apply(params, context, method='keys_values')
    return attention.apply(params, x, keys_values, mask, sow_weights=True, mutable=['intermediates'])

  y, state = run()
  monkeypatch.setattr(layers, 'ATTENTION_EINSUMS', (None, None))
  y_flax, state_flax = run()
  np.testing.assert_allclose(y, y_flax, rtol=1e-6, atol=1e-7)
  for name in ('attention_weights', 'attention_logits'):
    np.testing.assert_allclose(state['intermediates'][name][0], state_flax['intermediates'][name][0], rtol=1e-6)
  if masked:
    assert np.isneginf(state['intermediates']['attention_logits'][0][2, :, :, 1:]).all()
    assert (state['intermediates']['attention_weights'][0][2, :, :, 1:] == 0).all()


@pytest.mark.parametrize('masked', [False, True])
def test_xla_attention_is_heads_first_attention(masked):
  """attention='xla' (jax.nn.dot_product_attention) gives the heads-first outputs with the same params, masked
  keys included; asked for its maps, a layer takes the heads-first path and sows them."""
  from tcts_jax.models import layers

  x = jax.random.normal(jax.random.key(0), (3, 10, 16))
  context = jax.random.normal(jax.random.key(1), (3, 7, 16))
  mask = (jnp.arange(7) < jnp.array([[3], [7], [1]]))[:, None, None, :] if masked else None
  heads_first, xla = layers.Attention(2, 16), layers.Attention(2, 16, 'xla')
  params = heads_first.init(jax.random.key(2), x)

  def run(attention, **kwargs):
    keys_values = attention.apply(params, context, method='keys_values')
    return attention.apply(params, x, keys_values, mask, mutable=['intermediates'], **kwargs)

  (y, _), (y_xla, sown) = run(heads_first), run(xla)
  np.testing.assert_allclose(y_xla, y, rtol=1e-5, atol=1e-6)
  assert not sown  # no maps written
  assert str(jax.make_jaxpr(lambda: run(xla))()) != str(jax.make_jaxpr(lambda: run(heads_first))())  # another path
  (y_maps, state), (y_xla_maps, state_xla) = run(heads_first, sow_weights=True), run(xla, sow_weights=True)
  np.testing.assert_array_equal(y_xla_maps, y_maps)
  np.testing.assert_array_equal(
    state_xla['intermediates']['attention_weights'][0], state['intermediates']['attention_weights'][0]
  )


def test_generator_attention_by_config(tiny_config):
  """The config's generator.attention reaches every layer: 'xla' gives the heads-first logits and maps; an
  unknown name is a one-line error naming it."""
  from tcts_jax.data import get_dataset
  from tcts_jax.models import build_models, init_params

  vocabulary = get_dataset(tiny_config.data).vocabulary()
  models = build_models(tiny_config, vocabulary)
  params = init_params(models, tiny_config.data.image_size, jax.random.key(0))
  config = tiny_config.copy_and_resolve_references()
  config.generator.attention = 'xla'
  xla = build_models(config, vocabulary)
  assert xla.generator.attention == 'xla'
  ids = models.text_tokenizer.encode_batch(['a red circle', 'a small blue square at the top'])
  text, mask = models.text_encoder.apply({'params': params['text']}, ids)
  tokens = jnp.full((2, models.num_tokens), models.mask_id).at[:, :5].set(3)
  args = (params['generator'], tokens, text, mask, jnp.array([False, True]))
  programs = [str(jax.make_jaxpr(lambda: generator_forward(m.generator, *args))()) for m in (models, xla)]
  assert programs[0] != programs[1]
  for out, out_xla in zip(
    generator_forward(models.generator, *args, attention_layer=1),
    generator_forward(xla.generator, *args, attention_layer=1),
  ):
    np.testing.assert_allclose(out_xla, out, rtol=1e-4, atol=1e-5)
  config.generator.attention = 'flash'
  with pytest.raises(
    ValueError, match=r"generator.attention must be one of \('heads_first', 'xla', 'cudnn'\), got 'flash'"
  ):
    build_models(config, vocabulary)

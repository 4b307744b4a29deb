"""Self-guidance (docs/design.md §15): the low-rank adapter is the frozen generator when fresh and W + alpha/r AB
otherwise; error tokens replace a fixed share of visible tokens by the generator's samples; the sampler guides
AWAY from the auxiliary model's logits; the stage trains the adapter alone, and export + the API sample with it."""

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.api import TextToImage
from tcts_jax.models import lora
from tcts_jax.sampling.model import MaskedGenerator
from tcts_jax.sampling.sampler import Sampler, guided_logits, sampler_config
from tcts_jax.training.corruption import substitute
from tcts_jax.training.trainer import train_and_evaluate
from tcts_jax.utils import checkpoint
from tests.conftest import run_cli
from tests.test_train import tiny


def test_a_fresh_adapter_is_the_generator_and_a_trained_one_adds_alpha_over_rank_ab(tiny_model):
  config, models, params = tiny_model
  generator = params['generator']
  found = lora.targets(generator)
  # Per block: self-attention query/key/value/out, cross-attention query/out, the MLP's two kernels.
  assert len(found) == 8 * models.generator.num_layers
  assert not any('cross_attn/key' in p or 'cross_attn/value' in p for p in found)  # the text state is shared
  fresh = params['self_guidance']
  jax.tree.map(np.testing.assert_array_equal, lora.merge(generator, fresh, alpha=8.0), generator)

  flat = flax.traverse_util.flatten_dict(fresh, sep='/')
  trained = flax.traverse_util.unflatten_dict(
    {k: jax.random.normal(jax.random.key(i), v.shape) for i, (k, v) in enumerate(sorted(flat.items()))}, sep='/'
  )
  factors = flax.traverse_util.flatten_dict(trained, sep='/')
  merged = flax.traverse_util.flatten_dict(lora.merge(generator, trained, alpha=4.0), sep='/')
  original = flax.traverse_util.flatten_dict(generator, sep='/')
  rank = config.self_guidance.rank
  for path, kernel in original.items():
    if path not in found:
      np.testing.assert_array_equal(merged[path], kernel)
      continue
    a, b = factors[f'{path}/a'], factors[f'{path}/b']
    # The out projection's kernel is (heads, head_dim, width): its in-features are its first two axes.
    assert a.shape == (np.prod(kernel.shape[: found[path]]), rank)
    delta = (a @ b).reshape(kernel.shape) * 4.0 / rank
    np.testing.assert_allclose(merged[path] - kernel, delta, rtol=1e-4, atol=1e-5)


def test_error_tokens_replace_a_share_of_the_visible_tokens_by_the_samples():
  rng = jax.random.key(0)
  n = 64
  visible_counts = np.array([0, 1, 10, 40, 64])
  masked = jnp.asarray(np.arange(n)[None] >= visible_counts[:, None])  # the first `count` positions visible
  tokens = jnp.where(masked, 99, jnp.arange(n)[None] % 7)
  samples = jnp.full(tokens.shape, 50)
  out, substituted = substitute(rng, tokens, masked, samples, 0.3)
  # round(0.3 * visible), at least one where any token is visible.
  np.testing.assert_array_equal(np.sum(substituted, -1), [0, 1, 3, 12, 19])
  assert not np.any(substituted & np.asarray(masked))
  np.testing.assert_array_equal(out, np.where(substituted, 50, tokens))
  # Uniformly random positions: over many draws every visible position of a row is picked about equally often.
  hits = sum(np.asarray(substitute(jax.random.key(i), tokens, masked, samples, 0.3)[1][3]) for i in range(200))
  assert hits[:40].min() > 0 and hits[40:].max() == 0
  assert abs(hits[:40].mean() - 200 * 12 / 40) < 1e-9 and hits[:40].std() < 0.4 * hits[:40].mean()


def test_the_guided_logits_are_cfg_plus_the_extrapolation_away_from_the_auxiliary_model():
  keys = jax.random.split(jax.random.key(1), 3)
  cond, uncond, aux = (jax.random.normal(k, (2, 5, 7)) for k in keys)
  np.testing.assert_allclose(guided_logits(cond, uncond, 0.0, aux, 1.5), aux + 2.5 * (cond - aux), rtol=1e-5)
  np.testing.assert_allclose(guided_logits(cond, uncond, 3.0), cond + 3.0 * (cond - uncond), rtol=1e-6)
  np.testing.assert_allclose(
    guided_logits(cond, uncond, 3.0, aux, 2.0), cond + 3.0 * (cond - uncond) + 2.0 * (cond - aux), rtol=1e-5
  )


def _toy_generator(seen_rows: list) -> MaskedGenerator:
  """A 4-code model whose conditional and unconditional logits are [0, 1, 0, 0] at every position and whose
  auxiliary model is surer of code 1, [0, 2, 0, 0]: self-guidance must steer the draw away from code 1."""
  n, codes = 16, 4
  favoured = jnp.array([0.0, 1.0, 0.0, 0.0])

  def logits(params, tokens, text_state, attention_layer):
    del params, text_state, attention_layer
    return jnp.broadcast_to(favoured, tokens.shape + (codes,)), None

  def aux_logits(params, tokens, text_state):
    del params
    seen_rows.append((tokens.shape[0], text_state.shape[0]))
    return jnp.broadcast_to(2 * favoured, tokens.shape + (codes,))

  return MaskedGenerator(
    num_tokens=n,
    codebook_size=codes,
    mask_id=codes,
    num_layers=1,
    encode_text=lambda params, ids, negative: jnp.concatenate([ids, ids]).astype(jnp.float32),
    logits=logits,
    aux_logits=aux_logits,
  )


def test_the_sampler_guides_away_from_the_auxiliary_models_logits(tiny_config):
  seen = []
  model = _toy_generator(seen)
  text = jnp.zeros((8, 3), jnp.int32)
  base = sampler_config(tiny_config.sampler, strategy='uniform', steps=4, guidance_scale=0.0)
  plain = Sampler(model, base)(None, text, jax.random.key(0)).tokens
  guided = Sampler(model, sampler_config(base, self_guidance_scale=20.0))(None, text, jax.random.key(0)).tokens
  # Without it code 1 has p = e / (3 + e) ~ 0.48; at s = 20 its logit is 1 - 20: never drawn in 128 tokens.
  assert 0.3 < np.mean(plain == 1) < 0.7
  assert not np.any(guided == 1) and np.all(guided < 4)
  assert seen == [(8, 8)]  # traced once: the canvas's 8 rows and the conditional half of the text state
  with pytest.raises(ValueError, match='self_guidance_scale must be >= 0'):
    Sampler(model, sampler_config(base, self_guidance_scale=-1.0))
  no_aux = MaskedGenerator(**{**model.__dict__, 'aux_logits': None})
  with pytest.raises(ValueError, match='needs a self-guidance model'):
    Sampler(no_aux, sampler_config(base, self_guidance_scale=1.0))


def test_the_stage_trains_the_adapter_alone_and_export_samples_with_it(tiny_data_dir, tiny_weights, tmp_path):
  config = tiny('self_guidance', tiny_data_dir, num_steps=3, log_every=1, image_every=3, checkpoint_every=3)
  with config.unlocked():
    config.generator_checkpoint = str(tiny_weights)
  state, history = train_and_evaluate(config, tmp_path / 'sg')
  assert set(state.params) == {'self_guidance'} and set(checkpoint.latest_params(tmp_path / 'sg')) == {'self_guidance'}
  assert all(np.isfinite(m['loss']) and 0 <= m['substituted_accuracy'] <= 1 for _, m in history)
  b_factors = [v for k, v in flax.traverse_util.flatten_dict(state.params, sep='/').items() if k.endswith('/b')]
  assert max(float(jnp.max(jnp.abs(b))) for b in b_factors) > 0  # the adapter moved away from the generator

  # Without adapter weights, self-guidance says what is missing.
  plain = TextToImage.load(config, weights=str(tiny_weights))
  with pytest.raises(ValueError, match='no self_guidance.safetensors'):
    plain.generate(['a red circle'], self_guidance_scale=1.0)

  out = tmp_path / 'weights'
  r = run_cli(
    'tcts_jax.export',
    '--config=configs/shapes.py:sample,tiny',
    f'--tokenizer={tiny_weights}',
    f'--generator={tiny_weights}',
    f'--self_guidance={tmp_path / "sg"}',
    f'--out={out}',
  )
  assert r.returncode == 0, r.stderr[-2000:]
  model = TextToImage.load(config, weights=str(out))
  jax.tree.map(
    np.testing.assert_array_equal, model.params['self_guidance'], jax.device_get(state.params['self_guidance'])
  )
  generation = model.generate(['a red circle', 'a blue square'], seed=3, steps=4, self_guidance_scale=2.0)
  assert generation.images.shape == (2, 32, 32, 3) and np.all(generation.tokens < model.model.codebook_size)
  unguided = model.generate(['a red circle', 'a blue square'], seed=3, steps=4)
  assert np.any(generation.tokens != unguided.tokens)

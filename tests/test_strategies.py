"""The defining properties of Improved VQ-Diffusion's purity, the authors' cross-attention FAS, the oracle selector,
Halton order, ReMDM remasking, the EB-sampler's adaptive count and the sampler's entropy diagnostics
(docs/design.md §2.2, §2.3, §3.1), on toy models whose numbers are known, and the attention logits both real
models hand the sampler (docs/design.md §8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.sampling import select
from tcts_jax.sampling import strategies as strat
from tcts_jax.sampling.model import MaskedGenerator, TokenSelector
from tcts_jax.sampling.sampler import Sampler, cross_attention_map, purity_of, sampler_config
from tcts_jax.sampling.schedules import keep_counts

N, K, B = 16, 8, 3  # toy canvas, codebook, batch
PREFERRED = np.arange(N) % K  # the token each toy position prefers


def toy_model(peak, cross_cond=None, cross_uncond=None, num_layers=3) -> MaskedGenerator:
  """Logits `peak[i]` for token PREFERRED[i] and 0 for the others, whatever the canvas and the text (so guidance
  changes nothing). Self-attention: the first half of the canvas receives all of it (high frequency).
  Cross-attention logits per layer (N,) for the conditional and the unconditional rows, over two text slots of
  which the second is masked (-inf)."""

  def encode_text(params, text_ids, negative_ids):
    b = text_ids.shape[0]
    return {'unconditional': jnp.concatenate([jnp.zeros(b, bool), jnp.ones(b, bool)])}

  def logits(params, tokens, text, attention_layer):
    out = jnp.broadcast_to(jax.nn.one_hot(PREFERRED, K) * jnp.asarray(peak)[:, None], tokens.shape + (K,))
    if attention_layer is None:
      return out, None

    def layer_maps(layer):
      received = jnp.where(jnp.arange(N) < N // 2, 2.0, 0.0) / N
      self_attention = jnp.broadcast_to(received, (tokens.shape[0], 1, N, N))
      if cross_cond is None:
        return {'self_attention': self_attention}
      per_row = jnp.where(text['unconditional'][:, None], cross_uncond[layer], cross_cond[layer])  # (R, N)
      scores = jnp.stack([per_row, jnp.full_like(per_row, -jnp.inf)], axis=-1)[:, None]  # (R, 1, N, 2)
      cross = jax.nn.softmax(scores, -1)
      return {'self_attention': self_attention, 'cross_attention': cross, 'cross_attention_logits': scores}

    if isinstance(attention_layer, tuple):
      return out, tuple(layer_maps(i) for i in attention_layer)
    return out, layer_maps(attention_layer)

  return MaskedGenerator(N, K, K, num_layers, encode_text, logits)


def run(model, cfg, strategy, seed=0, selector=None, reference=None, **overrides):
  sampler = Sampler(
    model, sampler_config(cfg, strategy=strategy, **overrides), selector, trajectory=True, diagnostics=True
  )
  out = sampler({}, np.zeros((B, 2), np.int32), jax.random.key(seed), reference_tokens=reference)
  return jax.tree.map(np.asarray, out), sampler


@pytest.fixture(scope='module')
def cfg(tiny_config):
  return tiny_config.sampler


PEAKS = np.linspace(0.0, 3.0, N)  # from a flat to a fairly sure distribution


def entropy_np(logits):
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return -(p * np.log(p)).sum(-1)


# --- Improved VQ-Diffusion's purity ---------------------------------------------------------------------


def test_purity_is_the_max_probability_over_its_max_in_the_image():
  logits = jax.random.normal(jax.random.key(0), (2, N, K)) * 2
  p = np.asarray(jax.nn.softmax(logits)).max(-1)
  np.testing.assert_allclose(np.asarray(purity_of(logits)), p / p.max(-1, keepdims=True), rtol=1e-5)


def test_ivqd_purity_chooses_masked_positions_in_proportion_to_purity(cfg):
  s = strat.make_strategy('ivqd_purity', cfg)
  assert not s.revocable and s.needs_purity and s.name == 'ivqd_purity'
  purity = jax.random.uniform(jax.random.key(1), (2, N), minval=0.05, maxval=1.0)
  kept = jnp.broadcast_to(jnp.arange(N) % 3 == 0, (2, N))
  inputs = strat.StepInputs(kept=kept, logp=None, high_freq=None, purity=purity)
  weights = np.exp(np.asarray(s.keep_logits(inputs)))
  assert np.isinf(weights[np.asarray(kept)]).all()  # visible: kept for sure (never changed)
  np.testing.assert_allclose(weights[~np.asarray(kept)], np.asarray(purity)[~np.asarray(kept)], rtol=1e-6)


def test_ivqd_purity_sharpens_tokens_by_one_plus_r_purity(cfg):
  logits = jax.random.normal(jax.random.key(2), (2, N, K))
  purity = purity_of(logits)
  sharpened = strat.make_strategy('ivqd_purity', sampler_config(cfg, ivqd_purity_weight=2.5)).token_logits
  np.testing.assert_allclose(sharpened(logits, purity), (1 + 2.5 * np.asarray(purity))[..., None] * logits, rtol=1e-6)
  unchanged = strat.make_strategy('ivqd_purity', sampler_config(cfg, ivqd_purity_weight=0.0)).token_logits
  np.testing.assert_array_equal(unchanged(logits, purity), logits)


def test_ivqd_purity_draw_in_the_sampler(cfg):
  # Step 0 sees an empty canvas: with r = 0 its x̂ is uniform's (same seed), with r > 0 it is not.
  model = toy_model(np.full(N, 1.0))
  uniform, _ = run(model, cfg, 'uniform', steps=4)
  plain, sampler = run(model, cfg, 'ivqd_purity', steps=4, ivqd_purity_weight=0.0)
  sharp, _ = run(model, cfg, 'ivqd_purity', steps=4, ivqd_purity_weight=5.0)
  np.testing.assert_array_equal(plain.trajectory['tokens'][0], uniform.trajectory['tokens'][0])
  assert (sharp.trajectory['tokens'][0] != uniform.trajectory['tokens'][0]).any()
  # Sharper tokens: more of them are the preferred one; the last step draws without the sharpening.
  assert (sharp.tokens == PREFERRED).mean() > (plain.tokens == PREFERRED).mean()
  np.testing.assert_array_equal(sampler.schedules.token_transform, [1, 1, 1, 0])


# --- entropy diagnostics --------------------------------------------------------------------------------


@pytest.mark.parametrize('strategy, r', [('random_revoke', 0.0), ('ivqd_purity', 2.0)])
def test_entropies_are_those_of_the_draw_distribution(cfg, strategy, r):
  out, _ = run(toy_model(PEAKS), cfg, strategy, steps=4, ivqd_purity_weight=r)
  logits = np.eye(K)[PREFERRED] * PEAKS[:, None]
  p_max = np.exp(PEAKS) / (np.exp(PEAKS) + K - 1)
  h = entropy_np((1 + r * p_max / p_max.max())[:, None] * logits)  # (N,): the toy's distribution ignores the canvas
  if strategy == 'ivqd_purity':
    h_last = entropy_np(logits)  # no sharpening at the last step
  else:
    h_last = h
  kept = out.trajectory['kept']
  visible = np.concatenate([np.zeros_like(kept[:1]), kept[:-1]])  # (T, B, N) entering each step
  for t in range(4):
    ht = h_last if t == 3 else h
    masked_mean = [ht[~v].mean() if (~v).any() else 0.0 for v in visible[t]]
    visible_mean = [ht[v].mean() if v.any() else 0.0 for v in visible[t]]
    np.testing.assert_allclose(out.diagnostics['entropy_masked'][t], masked_mean, rtol=1e-5)
    np.testing.assert_allclose(out.diagnostics['entropy_visible'][t], visible_mean, rtol=1e-5, atol=1e-7)


# --- Halton order, ReMDM, the EB-sampler ------------------------------------------------------------------


def test_halton_order_is_a_well_spread_permutation():
  order = strat.halton_order(16)
  np.testing.assert_array_equal(np.sort(order), np.arange(256))
  # Low discrepancy: every prefix of the order spreads over the 4 quadrants and over the 16 4x4 blocks within
  # 4 positions of the even share (a raster order's first quarter is all in the top rows: 48 off).
  for blocks in (2, 4):
    block = (order // 16) // (16 // blocks) * blocks + (order % 16) // (16 // blocks)
    for m in range(1, 257):
      assert np.abs(np.bincount(block[:m], minlength=blocks**2) - m / blocks**2).max() < 4, (blocks, m)


@pytest.mark.parametrize('seed', [0, 1])
def test_halton_keeps_the_first_k_positions_of_the_order_whatever_the_logits(cfg, seed):
  peaks = np.random.default_rng(seed).uniform(0, 4, N)  # whatever the model prefers
  out, sampler = run(toy_model(peaks), cfg, 'halton', seed=seed, steps=5)
  order = strat.halton_order(4)
  for t, k in enumerate(sampler.schedules.keep_counts):
    expected = np.zeros(N, bool)
    expected[order[:k]] = True
    np.testing.assert_array_equal(out.trajectory['kept'][t], np.broadcast_to(expected, (B, N)))
  assert (out.tokens != K).all()


def test_remdm_sigma_caps_or_rescales_the_most_that_keeps_the_marginals():
  before, after = jnp.array([0.0, 0.25, 0.5, 0.9]), jnp.array([0.25, 0.5, 0.9, 1.0])
  sigma_max = np.array([0.0, 1.0, 0.2, 0.0])  # min(1, (1 - after) / before), 0 with nothing visible
  np.testing.assert_allclose(strat.remdm_sigma(before, after, 'cap', 0.3), np.minimum(0.3, sigma_max), rtol=1e-6)
  np.testing.assert_allclose(strat.remdm_sigma(before, after, 'rescale', 0.3), 0.3 * sigma_max, rtol=1e-6)
  # 'loop': only where the step holds the visible count (the loop), capped like 'cap'; plain decoding elsewhere.
  held = jnp.array([0.5, 0.9, 0.25])
  np.testing.assert_allclose(strat.remdm_sigma(held, held, 'loop', 0.3), [0.3, 1 / 9, 0.3], rtol=1e-6)
  np.testing.assert_array_equal(strat.remdm_sigma(before, after, 'loop', 0.3), np.zeros(4))
  with pytest.raises(ValueError, match='ReMDM schedule'):
    strat.remdm('spiral')


def test_remdm_loop_holds_the_kept_count_and_remasks_only_inside_the_loop(cfg):
  steps = 10
  out, sampler = run(toy_model(PEAKS), cfg, 'remdm', steps=steps, remdm_schedule='loop', remdm_eta=0.5)
  k = sampler.schedules.keep_counts
  # (0.45, 0.95) of 10 steps: 5 held steps after the first 4 (rounded) of the 5 decoding steps.
  np.testing.assert_array_equal(k, np.concatenate([keep_counts(5, N)[:4], np.full(5, keep_counts(5, N)[3]), [N]]))
  kept = out.trajectory['kept']
  assert (kept.sum(-1) == k[:, None]).all() and kept[-1].all()
  revoked = out.diagnostics['revoked']  # (T, B)
  assert revoked[4:9].sum() > 0 and revoked[:4].sum() == 0 and revoked[9].sum() == 0
  uniform, _ = run(toy_model(PEAKS), cfg, 'remdm', steps=steps, remdm_schedule='loop', remdm_eta=0.0)
  assert uniform.diagnostics['revoked'].sum() == 0
  with pytest.raises(ValueError, match='empty canvas only'):
    sampler({}, np.zeros((B, 2), np.int32), jax.random.key(0), init_tokens=np.zeros((B, N), np.int32))


@pytest.mark.parametrize('schedule, eta', [('cap', 0.1), ('rescale', 0.5)])
def test_remdm_remasks_a_visible_token_with_probability_sigma(schedule, eta):
  rows, n, visible, keep = 4000, 64, 32, 40
  s = strat.remdm(schedule, eta)
  kept = jnp.broadcast_to(jnp.arange(n) < visible, (rows, n))
  inputs = strat.StepInputs(
    kept=kept,
    logp=None,
    high_freq=None,
    keep_fraction=jnp.float32(keep / n),
    uniform=jax.random.uniform(jax.random.key(0), (rows, n)),
  )
  kept_after = np.asarray(select.gumbel_top_k(jax.random.key(1), s.keep_logits(inputs), keep))
  sigma = float(strat.remdm_sigma(visible / n, keep / n, schedule, eta))
  remasked = 1 - kept_after[:, :visible].mean()
  assert abs(remasked - sigma) < 4 * np.sqrt(sigma * (1 - sigma) / (rows * visible)), (remasked, sigma)
  assert (kept_after.sum(-1) == keep).all()
  # The slots left are filled from the masked positions, uniformly.
  filled = kept_after[:, visible:].mean(0)
  assert abs(filled.mean() - (keep - visible * (1 - remasked)) / (n - visible)) < 1e-3 and filled.std() < 0.02


def test_remdm_with_eta_zero_is_uniform_and_revokes_otherwise(cfg):
  model = toy_model(PEAKS)
  uniform, _ = run(model, cfg, 'uniform', steps=6)
  still, _ = run(model, cfg, 'remdm', steps=6, remdm_eta=0.0)
  np.testing.assert_array_equal(still.trajectory['kept'], uniform.trajectory['kept'])
  np.testing.assert_array_equal(still.tokens, uniform.tokens)
  moving, sampler = run(model, cfg, 'remdm', steps=6, remdm_schedule='rescale', remdm_eta=1.0)
  assert sampler.needs_uniform and moving.diagnostics['revoked'].sum() > 0
  assert (moving.tokens != K).all()  # every token decoded by the last step


@pytest.mark.parametrize('gamma', [0.5, 3.0])
def test_entropy_bounded_decodes_the_surest_tokens_within_the_bound(cfg, gamma):
  h = entropy_np(np.eye(K)[PREFERRED] * PEAKS[:, None])  # (N,): the toy's distribution ignores the canvas
  steps = 6
  out, _ = run(toy_model(PEAKS), cfg, 'entropy_bounded', steps=steps, eb_gamma=gamma)
  kept = out.trajectory['kept']
  visible = np.concatenate([np.zeros_like(kept[:1]), kept[:-1]])
  assert kept[-1].all()
  for t in range(steps):
    for new, masked_before in zip(kept[t] & ~visible[t], ~visible[t]):
      if not masked_before.any():
        assert not new.any()  # finished early: the remaining steps change nothing
        continue
      if t == steps - 1:
        np.testing.assert_array_equal(new, masked_before)  # the last step decodes the rest
        continue
      chosen, rest = np.sort(h[new]), np.sort(h[masked_before & ~new])
      assert len(chosen) >= 1 and (not len(rest) or chosen[-1] <= rest[0] + 1e-6)  # the surest first
      assert chosen[:-1].sum() <= gamma + 1e-5  # the bound holds ...
      if len(rest):  # ... and one more token would break it
        assert np.append(chosen, rest[0])[:-1].sum() > gamma - 1e-5
  tight, _ = run(toy_model(PEAKS), cfg, 'entropy_bounded', steps=steps, eb_gamma=0.0)
  assert (tight.diagnostics['decided'][:-1] == 1).all()  # gamma 0: one token a step, the rest at the end


def test_later_samplers_mix_per_step_with_the_others(cfg):
  out, sampler = run(toy_model(PEAKS), cfg, 'halton:2,remdm:2,entropy_bounded:1,random_revoke:1', steps=6)
  order = strat.halton_order(4)
  first = np.zeros(N, bool)
  first[order[: sampler.schedules.keep_counts[0]]] = True
  np.testing.assert_array_equal(out.trajectory['kept'][0], np.broadcast_to(first, (B, N)))
  assert (out.tokens != K).all() and sampler.needs_entropy and sampler.needs_uniform


# --- the authors' cross-attention FAS ---------------------------------------------------------------------


def test_cross_attention_map_is_their_normalised_sigmoid_mean():
  logits = [jax.random.normal(jax.random.key(i), (2, 3, N, 5)) for i in range(2)]
  a = np.mean([1 / (1 + np.exp(-np.asarray(x))) for x in logits], axis=0).mean(axis=(1, 3))
  a = a / (a.max(-1, keepdims=True) + 1e-10)
  expected = a - a.min(-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(cross_attention_map(logits)), expected, rtol=1e-5, atol=1e-7)


def test_cross_attention_fas_adds_the_time_weighted_map(cfg):
  base = strat.random_revoke()
  s = strat.fas(base, 10.0, 'cross_attention', cross_weight=3.0)
  assert s.needs_cross_attention and not s.needs_high_freq and s.revocable
  m = jax.random.uniform(jax.random.key(3), (2, N))
  kept = jnp.broadcast_to(jnp.arange(N) % 2 == 0, (2, N))
  inputs = strat.StepInputs(kept=kept, logp=None, high_freq=None, cross_attention=m, time=jnp.float32(0.25))
  np.testing.assert_allclose(s.keep_logits(inputs), 3.0 * 0.75 * np.asarray(m), rtol=1e-6)
  with pytest.raises(ValueError, match='unknown fas_map'):
    strat.fas(base, 10.0, 'value')


def test_cross_attention_fas_keeps_where_the_unconditional_map_is_high(cfg):
  # Layers 0 and 1 (13/19 of 3) are averaged, layer 2 is not; under guidance the map comes from the
  # unconditional rows, as in the authors' code; with guidance 0 from the conditional ones.
  rising, falling = np.linspace(-2, 2, N), np.linspace(2, -2, N)
  cond = [falling, falling, rising]
  uncond = [rising, rising + 0.5, falling]
  model = toy_model(np.full(N, 1.0), cond, uncond)
  settings = dict(fas_base='random_revoke', fas_map='cross_attention', fas_cross_weight=1e4, steps=4)
  sigmoid = np.mean([1 / (1 + np.exp(-uncond[i])) for i in (0, 1)], axis=0) / 2  # the masked slot adds 0
  expected = sigmoid / (sigmoid.max() + 1e-10)
  expected -= expected.min()
  for guidance, top in [(3.0, np.arange(N) >= N - 2), (0.0, np.arange(N) < 2)]:
    out, sampler = run(model, cfg, 'fas', guidance_scale=guidance, **settings)
    assert sampler.schedules.keep_counts[0] == 2
    np.testing.assert_array_equal(out.trajectory['kept'][0], np.broadcast_to(top, (B, N)))  # the map's top 2
    if guidance:
      np.testing.assert_allclose(out.trajectory['cross_attention'][0, 0], expected, atol=1e-6)


def test_cross_attention_fas_needs_attention_logits(cfg):
  def logits(params, tokens, text, attention_layer):
    maps = {'self_attention': jnp.zeros((tokens.shape[0], 1, N, N)), 'cross_attention': jnp.zeros((1,))}
    return jnp.zeros(tokens.shape + (K,)), (maps,)

  model = MaskedGenerator(N, K, K, 1, lambda p, ids, neg: {'r': jnp.zeros(2 * ids.shape[0])}, logits)
  sampler = Sampler(model, sampler_config(cfg, strategy='fas', fas_map='cross_attention', steps=2))
  with pytest.raises(ValueError, match='cross_attention_logits'):
    sampler({}, np.zeros((1, 2), np.int32), jax.random.key(0))


# --- the oracle selector --------------------------------------------------------------------------------


def reference_tokens():
  """The toy's preferred token at even positions, another token at odd ones."""
  return np.broadcast_to(np.where(np.arange(N) % 2 == 0, PREFERRED, (PREFERRED + 1) % K), (B, N)).astype(np.int32)


def test_oracle_keeps_matching_positions_first(cfg):
  out, sampler = run(toy_model(np.full(N, 50.0)), cfg, 'oracle', reference=reference_tokens(), steps=4, tcts_noise=0.0)
  assert sampler.needs_reference and not sampler.needs_selector
  match = np.broadcast_to(np.arange(N) % 2 == 0, (B, N))
  for t, k in enumerate(sampler.schedules.keep_counts):
    kept = out.trajectory['kept'][t]
    np.testing.assert_array_equal((kept & match).sum(-1), min(k, N // 2))  # matches go first, all of them


def test_oracle_is_tcts_with_a_perfect_selector(cfg):
  # The same draws, noise and FAS weight as tcts / tcts_fas fed a selector that scores -10 / +10.
  ref = reference_tokens()
  perfect = TokenSelector(
    encode_text=lambda params, ids, neg: {'r': jnp.zeros(2 * ids.shape[0])},
    logits=lambda params, tokens, ratio, text: jnp.where(tokens == ref[: tokens.shape[0]], -10.0, 10.0),
  )
  model = toy_model(np.full(N, 1.0), [np.linspace(-1, 1, N)] * 3, [np.linspace(1, -1, N)] * 3)
  for oracle, tcts, extra in [
    ('oracle', 'tcts', {}),
    ('oracle_fas', 'tcts_fas', {}),  # the toy's self-attention: the second half of the canvas is low-frequency
    ('oracle_fas', 'tcts_fas', dict(fas_map='cross_attention')),
  ]:
    settings = dict(steps=6, tcts_sharpness=1.5, **extra)
    a, _ = run(model, cfg, oracle, seed=4, reference=ref, **settings)
    b, _ = run(model, cfg, tcts, seed=4, selector=perfect, **settings)
    np.testing.assert_array_equal(a.trajectory['kept'], b.trajectory['kept'])
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_oracle_needs_reference_tokens(cfg):
  model = toy_model(np.full(N, 1.0))
  sampler = Sampler(model, sampler_config(cfg, strategy='u2r'))
  assert not sampler.needs_reference
  sampler = Sampler(model, sampler_config(cfg, strategy='uniform:8,oracle:8'))  # no selector asked for
  assert sampler.needs_reference
  with pytest.raises(ValueError, match='needs reference_tokens'):
    sampler({}, np.zeros((B, 2), np.int32), jax.random.key(0))
  with pytest.raises(ValueError, match=r'reference_tokens must have shape \(3, 16\)'):
    sampler({}, np.zeros((B, 2), np.int32), jax.random.key(0), reference_tokens=np.zeros((B, N - 1), np.int32))


# --- the attention logits of the real models (docs/design.md §8) ---------------------------------------


def check_attention_logits(model, params, tokens, text, layers):
  logits = jax.jit(model.logits, static_argnums=3)
  _, together = logits(params, tokens, text, layers)
  assert isinstance(together, tuple) and len(together) == len(layers)
  for layer, maps in zip(layers, together):
    _, alone = logits(params, tokens, text, layer)
    for key in ('self_attention', 'cross_attention', 'cross_attention_logits'):
      np.testing.assert_allclose(np.asarray(maps[key]), np.asarray(alone[key]), atol=1e-6)
    # The logits are the scores the softmax turned into the cross-attention probabilities.
    np.testing.assert_allclose(jax.nn.softmax(maps['cross_attention_logits'], -1), maps['cross_attention'], atol=1e-5)


def test_our_generator_gives_cross_attention_logits(tiny_model):
  config, models, params = tiny_model
  model = models.masked_generator()
  ids = models.text_tokenizer.encode_batch(['a red circle', 'a big blue square at the top left'])
  text = model.encode_text(params, ids, None)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, model.mask_id + 1, (4, model.num_tokens)), jnp.int32)
  check_attention_logits(model, params, tokens, text, (0, 1))
  _, maps = model.logits(params, tokens, text, 0)
  logits, allowed = np.asarray(maps['cross_attention_logits']), np.asarray(text.mask)[:, 0, 0]  # (R, L)
  assert not allowed.all()  # some text slots are masked: padding, and the null text's slots but its first
  for row in range(len(allowed)):
    assert np.isneginf(logits[row][..., ~allowed[row]]).all() and np.isfinite(logits[row][..., allowed[row]]).all()


def test_amused_gives_cross_attention_logits_and_samples_with_cross_attention_fas():
  from tcts_jax.api import TextToImage
  from tcts_jax.utils.config import load_config

  t2i = TextToImage.load(load_config('configs/amused.py:tiny'))
  ids = t2i.encode_prompts(['a red circle left of a blue square'])
  text = t2i.model.encode_text(t2i.params, ids, None)
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, t2i.model.mask_id + 1, (2, t2i.model.num_tokens)))
  check_attention_logits(t2i.model, t2i.params, tokens.astype(jnp.int32), text, (0, 1))
  out = t2i.generate(
    ['a red circle'], num_samples=2, strategy='fas', fas_map='cross_attention', steps=4, trajectory=True
  )
  assert out.tokens.max() < t2i.model.codebook_size
  cross = out.trajectory['cross_attention']
  assert cross.shape == (4, 2, t2i.model.num_tokens) and (cross >= 0).all() and (cross < 1).all() and cross.max() > 0

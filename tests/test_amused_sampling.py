"""aMUSEd's sampling rule as our sampler's `confidence` strategy + `amused` count rule, checked against runs of
diffusers' `AmusedScheduler` recorded by tests/fixtures/make_tiny_amused.py (no torch here)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.sampling import schedules
from tcts_jax.sampling.select import gumbel_top_k
from tcts_jax.sampling.strategies import StepInputs, make_strategy
from tcts_jax.utils.config import load_config
from tests.conftest import REPO

REFERENCE = np.load(REPO / 'tests/fixtures/tiny_amused_reference.npz')
MASK_ID, N = 71, 64


@pytest.mark.parametrize('steps', [12, 40])
def test_counts_equal_the_reference_scheduler(steps):
  masked_after = (REFERENCE[f'sched{steps}_after'].reshape(steps, 2, N) == MASK_ID).sum(-1)
  expected = schedules.keep_counts(steps, N, 'cosine', 'amused')
  for row in range(2):
    np.testing.assert_array_equal(N - masked_after[:, row], expected)


def test_amused_counts_differ_from_ours_only_in_the_rule():
  """Both rules follow the cosine schedule; ours also leaves room for every later step."""
  ours, amused = schedules.keep_counts(40, 64), schedules.keep_counts(40, 64, rule='amused')
  assert (np.diff(ours) >= 1).all() and (np.diff(amused) >= 1).all() and ours[-1] == amused[-1] == 64
  assert np.abs(ours.astype(int) - amused).max() <= 2
  with pytest.raises(ValueError, match="unknown count rule 'nope'"):
    schedules.keep_counts(4, 64, rule='nope')


@pytest.mark.parametrize('steps', [12, 40])
def test_confidence_keeps_the_positions_the_reference_keeps(steps):
  """Fed the reference's draws x̂ and logits, with its temperature at 0 (no noise), the strategy keeps exactly
  the positions the scheduler left unmasked, at every step."""
  cfg = load_config('configs/amused.py:tiny').sampler
  strategy = make_strategy('confidence', cfg)
  counts = schedules.keep_counts(steps, N, cfg.mask_schedule, cfg.count_rule)
  for t in range(steps):
    before = REFERENCE[f'sched{steps}_before'][t].reshape(2, N)
    logits = REFERENCE[f'sched{steps}_logits'][t].astype(np.float32).reshape(2, -1, N).transpose(0, 2, 1)
    x_hat = REFERENCE[f'sched{steps}_x_hat'][t].reshape(2, N)
    after = REFERENCE[f'sched{steps}_after'][t].reshape(2, N)
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), x_hat[..., None], axis=-1)[..., 0]
    inputs = StepInputs(kept=jnp.asarray(before != MASK_ID), logp=logp, high_freq=jnp.ones((2, N), bool))
    keep = gumbel_top_k(jax.random.key(t), strategy.keep_logits(inputs), counts[t], noise_scale=0.0)
    np.testing.assert_array_equal(np.asarray(keep), after != MASK_ID, err_msg=f'step {t}')
    np.testing.assert_array_equal(x_hat[before != MASK_ID], before[before != MASK_ID])  # visible tokens stay


def test_confidence_noise_runs_linearly_from_two_to_zero():
  """The scheduler's default temperature=(2, 0): torch.linspace(2, 0, T) scales its Gumbel noise."""
  cfg = load_config('configs/amused.py:tiny').sampler
  for steps in (1, 12, 16):
    progress = np.arange(1, steps + 1) / steps
    np.testing.assert_allclose(make_strategy('confidence', cfg).noise_scale(progress), np.linspace(2, 0, steps))

"""The accelerator run's own code paths (results/device/run.sh), at a tiny width on this CPU, so that the run
works the first time a GPU is lent. The benchmarks' timings are never checked here."""

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / 'benchmarks'))  # the benchmarks import their `timing` module as a script would

import paper_size  # noqa: E402

TINY = {'width': 32, 'num_layers': 1, 'num_heads': 2}


@pytest.mark.parametrize('compute_dtype, attention', [('float32', 'heads_first'), ('bfloat16', 'xla')])
def test_paper_size_run_times_the_step_it_counts(compute_dtype, attention):
  """--run times the train step whose FLOPs the projection counts (same program in float32), in bf16 too; its
  sampler path samples the 32 x 32-token, 2,886-code canvas."""
  model = paper_size.generator(TINY, attention)
  seconds, flops = paper_size.run_train_step(model, 1, compute_dtype, repeats=1)
  assert seconds > 0 and flops > 1e8
  if compute_dtype == 'float32':
    assert flops == paper_size.train_step_flops(model, 1)[1]
  sampled = paper_size.run_sampler(TINY, 1, compute_dtype, attention, steps=1, repeats=1)
  assert sampled['sampler_images_per_s'] > 0 and sampled['sampler_steps'] == 1

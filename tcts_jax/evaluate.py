r"""The eval job: generate for held-out captions per (strategy, steps), score, tabulate, plot.

  python -m tcts_jax.evaluate --config=configs/shapes.py:eval --workdir=workdirs/shapes/eval
  python -m tcts_jax.evaluate --config=configs/shapes.py:eval,smoke --workdir=/tmp/eval_smoke   # ~1 min

Writes DIR/results.json, DIR/results.md and DIR/tradeoff.png; resumable (finished shards are reused).
What is generated, how it is scored and what each number means: tcts_jax/evaluation/job.py.
"""

import jax
from absl import flags

from tcts_jax.evaluation.job import run_eval
from tcts_jax.evaluation.report import markdown_table
from tcts_jax.utils import distributed
from tcts_jax.utils.cli import define_config_flag, run_main


def main(argv):
  del argv
  if flags.FLAGS.workdir is None:
    raise ValueError('--workdir is required')
  distributed.initialize_from_flags()
  results = run_eval(flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.weights)
  if jax.process_index() == 0:
    print(markdown_table(results))


if __name__ == '__main__':
  define_config_flag('config', 'configs/shapes.py:eval', 'Config file with an `eval` section.')
  flags.DEFINE_string('workdir', None, 'Output directory (shards, results.json/md, tradeoff.png).')
  flags.DEFINE_string('weights', None, 'Weights directory (default: config.weights, the shipped model).')
  distributed.define_flags()
  run_main(main)

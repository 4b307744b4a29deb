r"""Held-out evaluation of the TCTS selector: BCE, accuracy and AUROC on the 'test' split.

  python -m tcts_jax.selector_eval --config=configs/shapes.py:selector \
      --config.generator_checkpoint=weights/shapes --selector=weights/shapes     # the shipped selector

(--selector=workdirs/shapes/selector evaluates one you trained.)

Prints JSON (tcts_jax/evaluation/selector.py).
"""

import json

from absl import flags

from tcts_jax.data import get_dataset
from tcts_jax.evaluation.selector import evaluate_selector, load_selector_params
from tcts_jax.models import build_models
from tcts_jax.utils.cli import define_config_flag, run_main


def main(argv):
  del argv
  config = flags.FLAGS.config
  models = build_models(config, get_dataset(config.data).vocabulary())
  params = load_selector_params(config, models, flags.FLAGS.selector)
  print(json.dumps(evaluate_selector(config, params, flags.FLAGS.num_batches, models), indent=1))


if __name__ == '__main__':
  define_config_flag('config', 'configs/shapes.py:selector', 'Config file.')
  flags.DEFINE_string('selector', None, 'Selector workdir or weights dir.', required=True)
  flags.DEFINE_integer('num_batches', 16, 'Test batches to pool (train.batch_size each).', lower_bound=1)
  run_main(main)

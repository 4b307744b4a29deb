r"""Trains one stage (tokenizer, generator, selector, features) of a text-to-image MGM.

  python -m tcts_jax.train --config=configs/shapes.py:tokenizer --workdir=workdirs/shapes/tokenizer

The train step is jitted over a `jax.sharding.Mesh` with a 'data' axis (params replicated, batch split
across all devices of all processes). Checkpoints are written periodically with orbax and training
resumes exactly from the latest readable one in `workdir` when rerun (tcts_jax/training/trainer.py). SIGTERM
saves the current step and exits 0; a NaN/inf metric stops training with one line, exit 2, and no
checkpoint of the diverged state.
"""

from absl import flags

from tcts_jax.training.trainer import TrainingDiverged, train_and_evaluate
from tcts_jax.utils.cli import define_config_flag, fail, run_main


def main(argv):
  del argv
  if flags.FLAGS.workdir is None:
    raise ValueError('--workdir is required')
  try:
    train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except TrainingDiverged as e:
    fail(str(e))


if __name__ == '__main__':
  define_config_flag('config', None, 'Config file, e.g. configs/shapes.py:generator.')
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints and summaries.')
  run_main(main)

r"""Trains one stage (tokenizer, generator, selector, features) of a text-to-image MGM.

  python -m tcts_jax.train --config=configs/shapes.py:tokenizer --workdir=workdirs/shapes/tokenizer

The train step is jitted over a `jax.sharding.Mesh` of all devices of all processes (config.train.mesh and
partition_rules: data parallel by default, ZeRO-3 with an fsdp axis; docs/design.md §13). Several processes:
add --coordinator_address=HOST:PORT --num_processes=N --process_id=I, or --distributed on a TPU VM slice
(launch/multihost.py does it for you). Checkpoints are written periodically with orbax and training
resumes exactly from the latest readable one in `workdir` when rerun (tcts_jax/training/trainer.py). SIGTERM
saves the current step and exits 0; a NaN/inf metric stops training with one line, exit 2, and no
checkpoint of the diverged state.
"""

from absl import flags

from tcts_jax.training.trainer import TrainingDiverged, train_and_evaluate
from tcts_jax.utils import distributed
from tcts_jax.utils.cli import define_config_flag, fail, run_main


def main(argv):
  del argv
  if flags.FLAGS.workdir is None:
    raise ValueError('--workdir is required')
  distributed.initialize_from_flags()
  try:
    train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except TrainingDiverged as e:
    fail(str(e))


if __name__ == '__main__':
  define_config_flag('config', None, 'Config file, e.g. configs/shapes.py:generator.')
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints and summaries.')
  distributed.define_flags()
  run_main(main)

"""Multi-process (multi-host) start-up for the CLIs that run over every device of every process.

On a TPU VM slice, SLURM or Open MPI, `--distributed` lets JAX find its peers itself. Anywhere else name
them: `--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (the same address on every
process; process 0 listens on it). Either way this must run before anything touches a device.
"""

import jax
from absl import flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_bool('distributed', False, 'Join a multi-process run found from the environment (TPU VM, SLURM, MPI).')
  flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for a multi-process run set up by hand.')
  flags.DEFINE_integer('num_processes', None, 'Processes in the run (with --coordinator_address).')
  flags.DEFINE_integer('process_id', None, "This process's index, 0 .. num_processes - 1 (with --coordinator_address).")


def initialize_from_flags() -> None:
  """jax.distributed.initialize from the flags above; nothing when none is given (a single process)."""
  given = [FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id]
  if FLAGS.coordinator_address is None and any(v is not None for v in given):
    raise ValueError('--num_processes and --process_id need --coordinator_address')
  if FLAGS.coordinator_address is not None:
    if FLAGS.num_processes is None or FLAGS.process_id is None:
      raise ValueError('--coordinator_address needs --num_processes and --process_id')
    if FLAGS.num_processes < 1 or not 0 <= FLAGS.process_id < FLAGS.num_processes:
      raise ValueError(f'--process_id {FLAGS.process_id} is not in 0 .. --num_processes {FLAGS.num_processes} - 1')
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  elif FLAGS.distributed:
    jax.distributed.initialize()

"""Weights on disk.

Two forms: the trainer's orbax checkpoints in a workdir (`checkpoints/<step>/`: the train state and the
data iterator's position, so a resumed run continues exactly), and exported weights (one `<part>.safetensors`
per model part, flat '/'-joined parameter names) that the repo ships and the samplers load. Loading checks
every name and shape against the model the config builds, so a mismatched or corrupt file fails with one
clear line instead of producing garbage.
"""

import contextlib
import pathlib
import shutil
import warnings

import flax.traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp
import safetensors.numpy
from absl import logging as absl_logging
from grain import checkpoint as grain_checkpoint

from tcts_jax.utils.config import resolve_path
from tcts_jax.utils.files import atomic_write


class CheckpointError(ValueError):
  pass


# The items of a trainer checkpoint: the train state (params, optimizer state, step) and, per process, the
# position of its data iterator. Checkpoints written before the iterator was saved hold one unnamed item.
STATE, DATA, LEGACY_STATE = 'state', 'data', 'default'


def checkpoint_manager(workdir, max_to_keep: int = 2, save_interval_steps: int = 1) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=save_interval_steps)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / 'checkpoints', options=options)


def save_train_state(mngr: ocp.CheckpointManager, step: int, state, loader, force: bool = False) -> bool:
  """Save the train state and the grain iterator's position (asynchronously); True if a save started."""
  args = ocp.args.Composite(**{STATE: ocp.args.StandardSave(state), DATA: grain_checkpoint.CheckpointSave(loader)})
  return mngr.save(step, args=args, force=force)


def newest_readable(steps, restore, where: str):
  """(step, restore(step)) for the newest of `steps` that restores, warning about each unreadable one
  (naming it and the step used instead); (None, None) without steps. None readable: CheckpointError."""
  steps, unreadable = sorted(steps, reverse=True), []
  for step in steps:
    try:
      restored = restore(step)
    except Exception as e:  # orbax and tensorstore raise many types for unreadable data
      unreadable.append((step, f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:200]))
      continue
    for bad, why in unreadable:
      warnings.warn(f'checkpoint step {bad} in {where} is unreadable ({why}); using step {step} instead')
    return step, restored
  if unreadable:
    raise CheckpointError(f'no readable checkpoint in {where}: steps {steps} are all unreadable ({unreadable[0][1]})')
  return None, None


def restore_train_state(mngr: ocp.CheckpointManager, target, loader):
  """The newest readable train state in `mngr` (None if there is none), with `loader` set to the position it
  had then. Unreadable newer checkpoints are moved aside to `<workdir>/unreadable_checkpoints/` (so the
  steps they held can be saved again)."""
  ckpt_dir = pathlib.Path(mngr.directory)
  latest = mngr.latest_step()
  if latest is not None and (ckpt_dir / str(latest) / LEGACY_STATE).is_dir():
    raise CheckpointError(
      f'the checkpoints in {ckpt_dir} predate the saved data position and cannot resume exactly; '
      'export them (python -m tcts_jax.export) or train in a new workdir'
    )

  def restore(step):
    args = {STATE: ocp.args.StandardRestore(target), DATA: grain_checkpoint.CheckpointRestore(loader)}
    return mngr.restore(step, args=ocp.args.Composite(**args))[STATE]

  step, state = newest_readable(mngr.all_steps(), restore, str(ckpt_dir))
  newer = [s for s in mngr.all_steps() if step is not None and s > step]
  for bad in newer:
    aside = ckpt_dir.parent / 'unreadable_checkpoints' / str(bad)
    shutil.rmtree(aside, ignore_errors=True)
    aside.parent.mkdir(exist_ok=True)
    (ckpt_dir / str(bad)).rename(aside)
  if newer:
    mngr.reload()
  return state


@contextlib.contextmanager
def absl_verbosity(level: int):
  previous = absl_logging.get_verbosity()
  absl_logging.set_verbosity(level)
  try:
    yield
  finally:
    absl_logging.set_verbosity(previous)


def restore_on_one_device(path):
  """An orbax checkpoint item (a train state) onto this process's first device, whatever mesh wrote it: a
  checkpoint of 8 or 256 devices exports on one host."""
  with ocp.StandardCheckpointer() as checkpointer:
    # Orbax logs a warning for unreadable metadata; the restore below then fails and says why, once.
    with absl_verbosity(absl_logging.ERROR):
      metadata = checkpointer.metadata(path).item_metadata
    one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device), metadata)
    return checkpointer.restore(path, target)


def latest_params(workdir):
  """The params of the newest readable orbax checkpoint in a trainer workdir (as NumPy arrays)."""
  ckpt_dir = pathlib.Path(workdir).absolute() / 'checkpoints'
  steps = [int(p.name) for p in ckpt_dir.glob('*') if p.name.isdigit()]  # unfinished saves: temporary names
  if not steps:
    raise CheckpointError(f'no checkpoints in {workdir}')

  def restore(step):
    item = next((i for i in (STATE, LEGACY_STATE) if (ckpt_dir / str(step) / i).is_dir()), STATE)
    return restore_on_one_device(ckpt_dir / str(step) / item)['params']

  _, params = newest_readable(steps, restore, str(ckpt_dir))
  return jax.tree.map(np.asarray, params)


def save_weights(path, params) -> None:
  """Write params to one safetensors file, atomically (temp file + rename)."""
  path = pathlib.Path(path)
  flat = {
    k: np.ascontiguousarray(np.asarray(v))
    for k, v in flax.traverse_util.flatten_dict(jax.device_get(params), sep='/').items()
  }
  with atomic_write(path) as f:
    f.write(safetensors.numpy.save(flat))


def load_weights(path, expected):
  """Read a safetensors file and check it against `expected` (a params pytree or its eval_shape)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise CheckpointError(f'checkpoint file not found: {path}')
  try:
    flat = safetensors.numpy.load_file(str(path))
  except Exception as e:
    raise CheckpointError(f'corrupt checkpoint {path}: {e}') from e
  return _checked(flat, expected, path)


def _checked(flat, expected, where):
  """Unflatten `flat` ('/'-joined names) after checking its names and shapes against `expected`."""
  want = flax.traverse_util.flatten_dict(expected, sep='/')
  missing, unused = sorted(set(want) - set(flat)), sorted(set(flat) - set(want))
  if missing or unused:
    raise CheckpointError(
      f'checkpoint {where} does not match the config: missing {missing[:3]}'
      f'{"..." if len(missing) > 3 else ""}, unexpected {unused[:3]}{"..." if len(unused) > 3 else ""}'
    )
  for name, spec in want.items():
    if tuple(flat[name].shape) != tuple(spec.shape):
      raise CheckpointError(
        f'checkpoint {where} does not match the config: {name} has shape '
        f'{tuple(flat[name].shape)}, the config expects {tuple(spec.shape)}'
      )
  return flax.traverse_util.unflatten_dict({k: np.asarray(flat[k], want[k].dtype) for k in want}, sep='/')


def load_part(source, part: str, expected):
  """Params of one model part ('tokenizer', 'text', 'generator', ...) from an exported weights dir
  (`<part>.safetensors`) or from a trainer workdir whose stage trained that part. A relative `source` is
  found from the cwd, else from the repo root (the shipped weights)."""
  source = resolve_path(source)
  if (source / f'{part}.safetensors').is_file():
    return load_weights(source / f'{part}.safetensors', expected)
  if (source / 'checkpoints').is_dir():
    params = latest_params(source)
    if part not in params:
      raise CheckpointError(f'the checkpoint in {source} has no {part!r} weights (it has {sorted(params)})')
    return _checked(flax.traverse_util.flatten_dict(params[part], sep='/'), expected, source)
  raise CheckpointError(f'no {part} weights in {source} (expected {part}.safetensors or a trainer workdir)')

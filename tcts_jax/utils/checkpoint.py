"""Weights on disk.

Two forms: the trainer's orbax checkpoints in a workdir (full train state, resumable), and exported
weights (one `<part>.safetensors` per model part, flat '/'-joined parameter names) that the repo ships
and the samplers load. Loading checks every name and shape against the model the config builds, so a
mismatched or corrupt file fails with one clear line instead of producing garbage.
"""

import pathlib

import flax.traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp
import safetensors.numpy

from tcts_jax.utils.config import resolve_path
from tcts_jax.utils.files import atomic_write


class CheckpointError(ValueError):
  pass


def checkpoint_manager(workdir, max_to_keep: int = 2, save_interval_steps: int = 1) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=save_interval_steps)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / 'checkpoints', options=options)


def latest_params(workdir):
  """The params of the latest orbax checkpoint in a trainer workdir (as NumPy arrays)."""
  ckpt_dir = pathlib.Path(workdir) / 'checkpoints'
  if not ckpt_dir.is_dir():
    raise CheckpointError(f'no checkpoints in {workdir}')
  with checkpoint_manager(workdir) as mngr:
    step = mngr.latest_step()
    if step is None:
      raise CheckpointError(f'no checkpoints in {workdir}')
    try:
      restored = mngr.restore(step, args=ocp.args.StandardRestore())
    except Exception as e:  # orbax raises many types for unreadable data
      raise CheckpointError(f'cannot read checkpoint step {step} in {workdir}: {type(e).__name__}') from e
  return jax.tree.map(np.asarray, restored['params'])


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

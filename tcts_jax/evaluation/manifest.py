"""How a result was made, written into results.json: two results can be compared knowing whether they were
made the same way (config, sampler settings, seeds, weights, code, devices)."""

import hashlib
import json
import pathlib
import subprocess
from typing import Optional

import jax

from tcts_jax.utils.config import REPO_ROOT


def file_sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def weights_files(directory) -> dict:
  """{file name: sha256} of the weight and vocabulary files of a weights dir, clip_text/'s tokenizer files
  included (empty for a trainer workdir)."""
  directory = pathlib.Path(directory)
  suffixes = ('.safetensors', '.json', '.npz', '.txt')
  files = [p for p in [*directory.glob('*'), *directory.glob('clip_text/*')] if p.is_file() and p.suffix in suffixes]
  return {str(p.relative_to(directory)): file_sha256(p) for p in sorted(files)}


def code_version() -> dict:
  """The git commit of the code and whether tracked files differ from it (None outside a git checkout)."""

  def git(*args) -> Optional[str]:
    try:
      out = subprocess.run(['git', '-C', str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
      return None
    return out.stdout.strip() if out.returncode == 0 else None

  commit = git('rev-parse', 'HEAD')
  status = git('status', '--porcelain', '--untracked-files=no') if commit else None
  return {'commit': commit, 'dirty': None if status is None else bool(status)}


def manifest(config, weights_dir, part_digests: dict, selector_source=None, split: Optional[str] = None) -> dict:
  devices = jax.devices()
  return {
    'config': json.loads(config.to_json()),
    'split': split,  # the held-out split the rows were generated for
    'seeds': {'eval': config.eval.seed, 'bootstrap': config.eval.seed},
    'weights_dir': str(weights_dir),
    'weights_files': weights_files(weights_dir),
    'selector_weights': None if selector_source is None else str(selector_source),
    # sha256 of the loaded parameters of every model part (the text encoder's is its own entry).
    'params': part_digests,
    'text_encoder': part_digests.get('text'),
    'code': code_version(),
    'devices': {'count': len(devices), 'kind': devices[0].device_kind, 'processes': jax.process_count()},
    'versions': {'jax': jax.__version__},
  }

"""Writing outputs: whole or not at all, with the permissions a user expects."""

import contextlib
import os
import pathlib
import tempfile


def _new_file_mode() -> int:
  """What `open()` would give a new file: 0o666 minus the process umask (read without changing it)."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


def png_output(path) -> pathlib.Path:
  """`path` as a PNG output, checked before any work: a .png name, its directory existing, not a directory."""
  path = pathlib.Path(path)
  if path.suffix.lower() != '.png':
    raise ValueError(f'--out must end in .png, got {path}')
  if path.is_dir():
    raise IsADirectoryError(f'--out {path} is a directory')
  if not path.absolute().parent.is_dir():
    raise FileNotFoundError(f'output directory does not exist: {path.absolute().parent}')
  return path


@contextlib.contextmanager
def atomic_write(path, mode: str = 'wb'):
  """Open a temporary file beside `path`; when the block ends without error it replaces `path`.

  A reader (or a rerun after a crash) sees the old file or the whole new one, never half of one. The file
  gets the permissions of a normally created file, not the owner-only mode of `tempfile.mkstemp`.
  """
  path = pathlib.Path(path)
  if not path.parent.is_dir():
    raise FileNotFoundError(f'output directory does not exist: {path.parent}')
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, mode) as f:
      yield f
    os.chmod(tmp, _new_file_mode())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)

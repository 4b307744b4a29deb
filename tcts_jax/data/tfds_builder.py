"""The base of our TFDS builders: generated here (nothing to download), stored as ARRAY_RECORD so that
`builder.as_data_source(split)` gives random access without importing TensorFlow."""

import inspect
import time

import tensorflow_datasets as tfds
from etils import epath


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder):
  """Abstract (TFDS registers only its concrete subclasses)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup needs the `importlib_resources` backport, which is not installed.
    return epath.Path(inspect.getfile(cls))

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', tfds.core.FileFormat.ARRAY_RECORD)
    super().__init__(**kwargs)


def prepare(builder_class, config_name: str, data_dir=None):
  """The prepared builder of a generated dataset (generating it only the first time); an unknown config name
  is a one-line error."""
  names = tuple(c.name for c in builder_class.BUILDER_CONFIGS)
  if config_name not in names:
    raise ValueError(f'unknown {builder_class.name} config {config_name!r}; expected one of {names}')
  builder = builder_class(config=config_name, data_dir=data_dir)
  builder.download_and_prepare()
  return builder


def run_build_command(build) -> None:
  """The `python -m tcts_jax.data.<module>` command: `build()` the dataset (flags already defined) and say
  where it is; bad input is one error line (tcts_jax/utils/cli.py)."""
  from tcts_jax.utils.cli import run_main  # pylint: disable=import-outside-toplevel (absl only for the command)

  def main(argv):
    del argv
    start = time.time()
    b = build()
    print(f'{b.info.full_name} at {b.data_dir}: {dict(b.info.splits)} in {time.time() - start:.1f} s')

  run_main(main)

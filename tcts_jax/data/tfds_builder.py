"""The base of our TFDS builders: generated here (nothing to download), stored as ARRAY_RECORD so that
`builder.as_data_source(split)` gives random access without importing TensorFlow."""

import inspect

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

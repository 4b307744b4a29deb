"""Captioned image datasets, found by name.

`config.data.name` names a module, `tcts_jax.data.<name>` (or any importable dotted path), whose
`get_dataset(data_config)` returns a `Dataset`. Everything else (trainer, export, evaluation, benchmarks)
reads data through that object, so adding a dataset is one module plus a config that names it:

  captioned_shapes   the embedded benchmark (procedural, with ground truth and an exact alignment checker)
  image_folder       a directory of images and a captions JSONL / CSV file (the layout users have)
  coco, cub          MS-COCO captions 2014/2017 and CUB-200 with Reed et al.'s captions, in their own layouts
"""

import dataclasses
from typing import Optional, Sequence

import numpy as np

from tcts_jax.utils.registry import import_module


@dataclasses.dataclass
class HeldOut:
  """The first records of a split, in order: what evaluations generate for and compare against."""

  captions: list
  images: np.ndarray  # (M, S, S, 3) uint8
  fields: dict  # dataset-specific ground truth per record, e.g. {'objects': (M, 3, 4), 'num_objects': (M,)}

  def __len__(self) -> int:
    return len(self.captions)


def field_array(value) -> np.ndarray:
  """A record's field as an array; scalar features come back as Python ints (int64), JAX computes in int32."""
  a = np.asarray(value)
  return a.astype(np.int32) if a.dtype == np.int64 else a


def decode_caption(caption) -> str:
  return caption.decode('utf-8') if isinstance(caption, bytes) else str(caption)


class Dataset:
  """What the library needs of a captioned image dataset.

  A subclass gives `name`, `image_size`, `builder()` (a prepared TFDS builder stored as ARRAY_RECORD, so
  `as_data_source` gives random access without TensorFlow) and `vocabulary()`; `fields` names the
  per-record arrays besides image and caption that batches carry. Optional: `evaluators` (metrics that
  exist only for this dataset, by name) and `reference_images` (what an ideal generator would draw).
  """

  name: str = ''
  image_size: int = 0
  fields: tuple = ()
  evaluators: dict = {}
  # The FID-shapes feature network's classification heads, ((name, positions, classes), ...), for datasets
  # with per-record ground truth; `feature_targets` gives their (B, positions) int targets from a batch.
  feature_heads: tuple = ()

  @property
  def benchmark(self) -> str:
    """How results name the data they were measured on."""
    return self.name

  def builder(self):
    """The prepared TFDS builder (generating the data the first time)."""
    raise NotImplementedError

  def vocabulary(self) -> list:
    """Every caption word, for learned word-level text encoders."""
    raise NotImplementedError

  def source(self, split: str):
    """Random-access records of `split`: dicts with 'image' (S, S, 3) uint8, 'caption' and `fields`."""
    return self.builder().as_data_source(split)

  def num_records(self, split: str) -> int:
    return self.builder().info.splits[split].num_examples

  def held_out(self, split: str, count: int) -> HeldOut:
    """The first `count` records of `split` (fewer if the split is smaller), in order."""
    source = self.source(split)
    records = [source[i] for i in range(min(count, len(source)))]
    if not records:
      raise ValueError(f'dataset {self.name}: split {split!r} is empty')
    return HeldOut(
      captions=[decode_caption(r['caption']) for r in records],
      images=np.stack([np.asarray(r['image'], np.uint8) for r in records]),
      fields={k: np.stack([field_array(r[k]) for r in records]) for k in self.fields},
    )

  def feature_targets(self, batch: dict) -> dict:
    """{head name: (B, positions) int32 class targets} of a batch's `fields` (see `feature_heads`)."""
    raise ValueError(f'dataset {self.name!r} has no ground truth to train the FID-shapes feature network on')

  def reference_images(self, held_out: HeldOut, example: np.ndarray, seed: int) -> Optional[np.ndarray]:
    """Images an ideal generator could output for the held-out records `example` (one per entry), drawn
    independently of the held-out images; None when the dataset cannot draw them (only real data)."""
    del held_out, example, seed
    return None


def get_dataset(data_config) -> Dataset:
  """The dataset `data_config.name` configured by `data_config`."""
  return import_module(data_config.name, 'tcts_jax.data', 'dataset').get_dataset(data_config)


def require_fields(dataset: Dataset, names: Sequence[str], what: str) -> None:
  missing = [n for n in names if n not in dataset.fields]
  if missing:
    raise ValueError(f'{what} needs the ground-truth fields {missing}, which dataset {dataset.name!r} does not have')

"""Input pipeline: any `Dataset`'s random-access records through grain, as numpy batches.

Reading does not import TensorFlow. The returned grain iterator supports `get_state()` /
`set_state()` for checkpointing.
"""

from __future__ import annotations

from typing import Callable, Iterator

import grain
import numpy as np

from tcts_jax.data import Dataset, decode_caption, field_array


def example_to_numpy(example: dict, fields, tokenize: Callable[[str], np.ndarray] | None, index: int = -1) -> dict:
  """One record as numpy: image uint8, caption str, the dataset's `fields` as arrays, and `index`."""
  out = {k: field_array(example[k]) for k in fields}
  caption = decode_caption(example['caption'])
  out.update(
    image=np.asarray(example['image'], np.uint8), caption=caption, index=np.int32(index)
  )  # the record's position in its split (keys per-record caches)
  if tokenize is not None:
    out['text_ids'] = np.asarray(tokenize(caption), np.int32)
  return out


def collate(examples: list[dict]) -> dict:
  # Captions stay python strings (object array); np.stack would make fixed-width '<U' arrays.
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0] if k != 'caption'}
  batch['caption'] = np.array([e['caption'] for e in examples], dtype=object)
  return batch


def with_drawn_caption(example: dict, seed: int, position: int) -> dict:
  """`example` whose 'caption' is one of its 'captions' (COCO: 5, CUB: 10), drawn from (seed, position in the
  global stream): the same at that step however many processes read, and after a resume."""
  captions = example.get('captions')
  if captions is None or len(captions) < 2:
    return example
  return {**example, 'caption': captions[np.random.default_rng((seed, position)).integers(len(captions))]}


def process_rows(ds: grain.MapDataset, batch_size: int, process_index: int, process_count: int) -> grain.MapDataset:
  """The elements of `ds` that fall in rows [p B, (p + 1) B) of its batches of B * process_count, in order."""
  if process_count == 1:
    return ds
  rows = batch_size * process_count
  full, rest = divmod(len(ds), rows)
  length = full * batch_size + min(max(rest - process_index * batch_size, 0), batch_size)
  first = process_index * batch_size
  return grain.MapDataset.range(length).map(lambda k: ds[(k // batch_size) * rows + first + k % batch_size])


def make_loader(
  dataset: Dataset,
  split: str,
  batch_size: int,
  *,
  seed: int = 0,
  shuffle: bool = True,
  num_epochs: int | None = None,
  drop_remainder: bool = True,
  process_index: int | None = None,
  process_count: int | None = None,
  tokenize: Callable[[str], np.ndarray] | None = None,
) -> Iterator[dict]:
  """Iterator of numpy batches of `batch_size` (per process) records of `dataset`.

  Batches: image uint8 (B, S, S, 3), caption object array of str (B,), index int32 (B,) (record number in
  the split), the dataset's `fields` (e.g. objects int32 (B, 3, 4) and num_objects int32 (B,) for
  captioned shapes), and text_ids int32 (B, L) when `tokenize` is given; with `shuffle`, a record with
  several captions gives one drawn per visit (`with_drawn_caption`). The records form one global
  order, a function of `seed` alone, cut into global batches of `batch_size * process_count`; process p
  reads rows [p B, (p + 1) B) of each (only those records). So the global batches, and a run's result, do
  not depend on how many processes read them. `num_epochs=None` repeats forever. Prepares the dataset on
  first use.
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel (the pipeline itself does not need jax)

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count

  source = dataset.source(split)
  # Shuffle and repeat hand later epochs indices past the end (the source wraps them): keep the record's own.
  ds = grain.MapDataset.source(source).map_with_index(lambda i, example: (i % len(source), example))
  if shuffle:
    ds = ds.shuffle(seed=seed)  # Reshuffled differently every epoch by `repeat`.
  ds = ds.repeat(num_epochs)
  if shuffle:  # training: a record with several captions shows one drawn at each visit
    ds = ds.map_with_index(lambda j, indexed: (indexed[0], with_drawn_caption(indexed[1], seed, j)))
  ds = process_rows(ds, batch_size, process_index, process_count)
  ds = ds.map(lambda indexed: example_to_numpy(indexed[1], dataset.fields, tokenize, indexed[0]))
  ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=collate)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=16)))

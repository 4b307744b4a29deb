"""Two stages (base 32 px + Muse super-resolution to 64 px) against the single-model ways to 64 px, on captioned shapes.

  python results/super_res/compare.py --num_images=200      # writes results/super_res/results.json and .png

Rows, the same validation captions and seeds for all: the base model's 32 px samples upsampled 2x (nearest); the
base model on the 16 x 16-token canvas in windows (docs/design.md §16.1) and upsampled + refined (§16.2); the two
stages (§17); and the ceilings: the real 64 px scenes and the same through the 64 px VQ. Alignment is the exact
checker at 64 px; FID-shapes compares the images area-downsampled to 32 px with real 32 px scenes (the feature
network reads 32 px). Paired differences of object accuracy with 95% bootstrap intervals.
"""

import json
import pathlib
import sys

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tcts_jax import editing  # noqa: E402
from tcts_jax.api import SuperResolution, TextToImage  # noqa: E402
from tcts_jax.data import captioned_shapes, get_dataset, shapes_alignment  # noqa: E402
from tcts_jax.evaluation.stats import bootstrap, paired_difference  # noqa: E402
from tcts_jax.metrics.fid_shapes import FIDShapes  # noqa: E402
from tcts_jax.training.super_res import downsample  # noqa: E402
from tcts_jax.utils import visualize  # noqa: E402
from tcts_jax.utils.config import load_config  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_images', 200, 'Validation captions (one image each).')
flags.DEFINE_integer('batch_size', 50, 'Images per sampler call.')
flags.DEFINE_string('weights', 'weights/shapes_x2', 'The super-resolution weights dir (export of the super_res stage).')
flags.DEFINE_string('out', 'results/super_res', 'Where results.json and samples.png go.')

RESAMPLES = 1000


def main(argv):
  del argv
  config = load_config('configs/shapes.py:super_res')
  held_out = get_dataset(config.data).held_out('validation', FLAGS.num_images)  # the 64 px scenes
  captions, objects, num_objects = held_out.captions, held_out.fields['objects'], held_out.fields['num_objects']

  t2x = SuperResolution.load(config, FLAGS.weights)
  t2i: TextToImage = t2x.base
  rows = {name: [] for name in ('base 32 px, upsampled', 'windows 16x16', 'upsampled + refined', 'two stages')}
  for start in range(0, len(captions), FLAGS.batch_size):
    batch, key = captions[start : start + FLAGS.batch_size], start  # a seed per batch, shared by every row
    gen = t2x.generate(batch, seed=key)
    small = gen.trajectory['base_images']  # the base model's own samples (seed `key`)
    rows['base 32 px, upsampled'].append(np.repeat(np.repeat(small, 2, axis=1), 2, axis=2))
    rows['windows 16x16'].append(t2i.at_grid(16).generate(batch, seed=key).images)
    low = t2i.generate(batch, seed=key).tokens
    rows['upsampled + refined'].append(editing.refine_upsampled(t2i, low, batch, 16, jax.random.key(key)).images)
    rows['two stages'].append(gen.images)
    print(f'{start + len(batch)}/{len(captions)} captions', flush=True)
  images = {name: np.concatenate(parts) for name, parts in rows.items()}
  real = held_out.images
  images['real 64 px'] = real
  images['real through the 64 px VQ'] = np.concatenate(
    [t2x_decode(t2x, real[i : i + FLAGS.batch_size]) for i in range(0, len(real), FLAGS.batch_size)]
  )

  fid = FIDShapes.load('weights/shapes')
  base_data = load_config(config.super_res.base_config).data
  real_32 = get_dataset(base_data).held_out('validation', FLAGS.num_images).images  # the same scenes at 32 px
  results, per_image = {}, {}
  for name, imgs in images.items():
    scores = shapes_alignment.score_batch(imgs, objects, num_objects)['per_image']
    per_image[name] = scores
    row = bootstrap(lambda idx, s=scores: captioned_shapes.pooled_alignment(s, idx), len(imgs), RESAMPLES, 0)
    results[name] = {
      'object_accuracy': row['object_accuracy'],
      'all_correct': row['all_correct'],
      'fid_shapes_32px': fid(np.asarray(downsample(imgs)), real_32),
    }
  pairs = [
    ('two stages', 'windows 16x16'),
    ('two stages', 'upsampled + refined'),
    ('two stages', 'base 32 px, upsampled'),
  ]
  diffs = {
    f'{a} - {b}': paired_difference(captioned_shapes.pooled_alignment, per_image[a], per_image[b], RESAMPLES, 0)
    for a, b in pairs
  }
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'results.json').write_text(json.dumps({'rows': results, 'paired': diffs, 'num_images': len(real)}, indent=1))
  shown = [images[name][:4] for name in images]
  labels = [f'{name}: {c}' for name in images for c in captions[:4]]
  visualize.save_png(out / 'samples.png', visualize.caption_grid(np.concatenate(shown), labels, cols=4, scale=2))
  for name, r in results.items():
    print(
      f'{name:>28}: object acc. {percent(r["object_accuracy"])}, all correct {percent(r["all_correct"])}, '
      f'FID-shapes (32 px) {r["fid_shapes_32px"]:.2f}'
    )
  for name, d in diffs.items():
    print(f'{name}: object acc. {percent(d["object_accuracy"], signed=True)}')


def percent(stat: dict, signed: bool = False) -> str:
  """'63.6 [58.1, 68.2]' of a bootstrap statistic in [0, 1]."""
  low, high = (100 * x for x in stat.get('ci95', [float('nan')] * 2))
  return f'{100 * stat["value"]:{"+" if signed else ""}.1f} [{low:.1f}, {high:.1f}]'


def t2x_decode(t2x: SuperResolution, images) -> np.ndarray:
  """Real 64 px images through the 64 px VQ (encode, decode): the ceiling of the super-resolution stage."""
  tokens = t2x.models.tokenizer.apply(
    {'params': t2x.params['tokenizer']}, np.asarray(images, np.float32) / 127.5 - 1.0, method='encode'
  )
  return visualize.to_uint8(t2x.models.decode_tokens(t2x.params['tokenizer'], tokens.reshape(len(images), -1)))


if __name__ == '__main__':
  app.run(main)

r"""Your own images: a folder of images + a captions file (tcts_jax/data/image_folder.py), trained with the
recipe and model sizes of configs/shapes.py. Give the folder (and for sampling the exported weights):

  python -m tcts_jax.data.image_folder --folder=FOLDER                                  # build the TFDS data
  python -m tcts_jax.train --config=configs/image_folder.py:tokenizer --config.data.folder=FOLDER \
      --workdir=workdirs/folder/tokenizer
  python -m tcts_jax.train --config=configs/image_folder.py:generator --config.data.folder=FOLDER \
      --workdir=workdirs/folder/generator --config.tokenizer_checkpoint=workdirs/folder/tokenizer
  python -m tcts_jax.export --config=configs/image_folder.py --config.data.folder=FOLDER \
      --tokenizer=workdirs/folder/tokenizer --generator=workdirs/folder/generator --out=workdirs/folder/weights
  python -m tcts_jax.sample --config=configs/image_folder.py --config.data.folder=FOLDER \
      --weights=workdirs/folder/weights --prompt="..."
  python -m tcts_jax.evaluate --config=configs/image_folder.py:eval --config.data.folder=FOLDER \
      --weights=workdirs/folder/weights --config.eval.clip_weights=CLIP_DIR --workdir=workdirs/folder/eval

Stages and variants are those of configs/shapes.py (`:tokenizer,tiny`, ...), except `features` (the FID-shapes
network learns captioned shapes' ground truth, which a folder does not have). The eval job scores CLIP-S, MID
and Inception FID where their weights are given; the captioned-shapes checker does not apply here.
"""

import pathlib

import ml_collections

from tcts_jax.utils.config import load_config


def get_config(arg: str = 'sample') -> ml_collections.ConfigDict:
  if arg.split(',')[0] == 'features':
    raise ValueError('the features stage trains on captioned shapes ground truth; an image folder has none')
  c = load_config(f'{pathlib.Path(__file__).with_name("shapes.py")}:{arg}')
  with c.unlocked():
    c.data = dict(
      name='image_folder',
      folder=ml_collections.FieldReference(None, field_type=str),  # the directory with captions.jsonl
      test_fraction=0.1,  # records without a "split" field go to the test split at this rate
      data_dir=ml_collections.FieldReference(None, field_type=str),  # where the TFDS files live
      image_size=c.data.image_size,
    )
    c.weights = ml_collections.FieldReference(None, field_type=str)  # what export wrote (no shipped weights)
    if 'eval' in c:
      c.eval.metrics = ('clip_score', 'mid', 'inception_fid')
      c.eval.tradeoff = dict(y='clip_score', x='inception_fid')
      c.eval.features_weights = None
  return c

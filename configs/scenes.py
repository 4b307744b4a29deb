r"""Shape scenes: the benchmark in the paper's regime (docs/design.md §11) and its shipped model.

3-6 solid or hollow shapes at 48 px (12 x 12 = 144 tokens), placed by cell, by relation to another object or
freely, on plain, striped or checkered backgrounds. The recipe and model sizes are those of configs/shapes.py
(whose stages and `tiny` variant this config takes), with the generator trained to COPY visible tokens (the
paper's generator does; configs/shapes.py's `copy` variant) and the selector trained on inputs that match
sampling. launch/train_scenes.sh runs the whole recipe:

  python -m tcts_jax.data.scenes_tfds --config=default
  python -m tcts_jax.train --config=configs/scenes.py:tokenizer --workdir=workdirs/scenes/tokenizer
  python -m tcts_jax.tokenizer_eval --config=configs/scenes.py:tokenizer --tokenizer=workdirs/scenes/tokenizer
  python -m tcts_jax.train --config=configs/scenes.py:generator --workdir=workdirs/scenes/generator \
      --config.tokenizer_checkpoint=workdirs/scenes/tokenizer
  python -m tcts_jax.export --config=configs/scenes.py --tokenizer=workdirs/scenes/tokenizer \
      --generator=workdirs/scenes/generator --out=workdirs/scenes/export
  python -m tcts_jax.train --config=configs/scenes.py:selector --workdir=workdirs/scenes/selector \
      --config.generator_checkpoint=workdirs/scenes/export
  python -m tcts_jax.train --config=configs/scenes.py:features --workdir=workdirs/scenes/features
  python -m tcts_jax.export --config=configs/scenes.py --tokenizer=workdirs/scenes/tokenizer \
      --generator=workdirs/scenes/generator --selector=workdirs/scenes/selector \
      --features=workdirs/scenes/features --out=weights/scenes

Sampling and the eval job:

  python -m tcts_jax.sample --config=configs/scenes.py --prompt="a large solid red circle in the middle and \
a small hollow blue square left of the red circle on a striped background"
  python -m tcts_jax.evaluate --config=configs/scenes.py:eval --workdir=workdirs/scenes/eval
"""

import pathlib

import ml_collections

from tcts_jax.utils.config import load_config


def get_config(arg: str = 'sample') -> ml_collections.ConfigDict:
  parts = [p for p in arg.split(',') if p]
  if 'copy' in parts:
    raise ValueError("configs/scenes.py always trains the copying generator; drop the 'copy' variant")
  c = load_config(f'{pathlib.Path(__file__).with_name("shapes.py")}:{",".join(parts + ["copy"])}')
  with c.unlocked():
    c.data.name = 'shape_scenes'
    c.data.image_size = 48
    # Captions of 6 objects with relations run to ~75 words.
    c.text.max_length = 80
    c.weights = 'weights/scenes'
  return c

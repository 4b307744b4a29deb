r"""Held-out evaluation of the VQ tokenizer: how much of each scene survives encode -> decode.

  python -m tcts_jax.tokenizer_eval --config=configs/shapes.py:tokenizer --tokenizer=workdirs/shapes/tokenizer

Prints JSON: the reconstructions' scores (tcts_jax/evaluation/tokenizer.py), pixel errors, codebook usage.
"""

import json

from absl import flags

from tcts_jax.data import get_dataset
from tcts_jax.evaluation.tokenizer import evaluate_tokenizer
from tcts_jax.models import abstract_params, build_models
from tcts_jax.utils import checkpoint
from tcts_jax.utils.cli import define_config_flag, run_main


def main(argv):
  del argv
  config = flags.FLAGS.config
  models = build_models(config, get_dataset(config.data).vocabulary())
  expected = abstract_params(models, config.data.image_size)['tokenizer']
  params = checkpoint.load_part(flags.FLAGS.tokenizer, 'tokenizer', expected)
  print(json.dumps(evaluate_tokenizer(config, params, flags.FLAGS.num_images), indent=1))


if __name__ == '__main__':
  define_config_flag('config', 'configs/shapes.py:tokenizer', 'Config file.')
  flags.DEFINE_string('tokenizer', None, 'Tokenizer workdir or weights dir.', required=True)
  flags.DEFINE_integer('num_images', 1000, 'Test images to reconstruct and score.', lower_bound=1)
  run_main(main)

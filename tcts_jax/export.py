r"""Exports trained stages to a weights directory (what the repo ships and the samplers load).

  python -m tcts_jax.export --config=configs/shapes.py \
      --tokenizer=workdirs/shapes/tokenizer --generator=workdirs/shapes/generator --out=weights/shapes

Writes <part>.safetensors for tokenizer, text and generator, and vocab.json (the text vocabulary the
model was trained with: the dataset's). For a CLIP-conditioned model (text.encoder='clip') text.safetensors is
the frozen CLIP text tower, and clip_text/ holds its config and tokenizer files instead of vocab.json. With
--selector=workdirs/shapes/selector also selector.safetensors (TCTS), with --self_guidance=workdirs/shapes/self_guidance
also self_guidance.safetensors (self-guidance's adapter), and with --features=workdirs/shapes/features also
features.safetensors (the FID-shapes network). With a super_res config, --tokenizer (the 64 px one) and --super_res
write that stage's weights dir instead (docs/design.md §17).
"""

import json
import pathlib

from absl import flags

from tcts_jax.data import get_dataset
from tcts_jax.models import abstract_params, build_models, exported_clip_dir, frozen_text, load_text_params
from tcts_jax.models.text import copy_clip_text_files
from tcts_jax.models import super_res
from tcts_jax.models.features import abstract_feature_params, build_feature_net
from tcts_jax.utils import checkpoint
from tcts_jax.utils.cli import define_config_flag, run_main
from tcts_jax.utils.files import atomic_write

FLAGS = flags.FLAGS


def main(argv):
  del argv
  config, out = FLAGS.config, pathlib.Path(FLAGS.out)
  if out.exists() and not out.is_dir():
    raise ValueError(f'--out {out} exists and is not a directory')
  if config.stage == 'super_res':
    return export_super_res(config, out)
  if not FLAGS.generator:
    raise ValueError('give --generator (a generator workdir or weights dir)')
  clip = frozen_text(config)
  vocabulary = [] if clip else get_dataset(config.data).vocabulary()
  models = build_models(config, vocabulary)
  expected = abstract_params(models, config.data.image_size)
  sources = {'tokenizer': FLAGS.tokenizer, 'generator': FLAGS.generator}
  for part in ('selector', 'self_guidance'):
    if getattr(FLAGS, part):
      sources[part] = getattr(FLAGS, part)
  params = {part: checkpoint.load_part(src, part, expected[part]) for part, src in sources.items()}
  params['text'] = load_text_params(config, FLAGS.generator, expected['text'])
  if FLAGS.features:  # not part of the text-to-image model: its own architecture (config.features)
    net = build_feature_net(config)
    params['features'] = checkpoint.load_part(
      FLAGS.features, 'features', abstract_feature_params(net, config.data.image_size)
    )
  out.mkdir(parents=True, exist_ok=True)
  for part, p in params.items():
    checkpoint.save_weights(out / f'{part}.safetensors', p)
  if clip:  # the tokenizer and config the CLIP text tower needs; its weights are text.safetensors
    copy_clip_text_files(config.text.clip_dir, exported_clip_dir(out))
  else:
    with atomic_write(out / 'vocab.json', 'w') as f:
      json.dump(vocabulary, f)
  report(out)


def export_super_res(config, out: pathlib.Path) -> None:
  """The super-resolution stage's weights dir: its transformer and the high-resolution tokenizer (the base model's
  text encoder and VQ stay in the base weights dir, super_res.base_weights)."""
  from tcts_jax.training.super_res import base_model  # pylint: disable=import-outside-toplevel (a training module)

  if not FLAGS.super_res:
    raise ValueError('a super_res config exports --super_res=WORKDIR (and --tokenizer, the 64 px tokenizer)')
  models = super_res.build_super_res(config, base_model(config)[1])
  expected = super_res.abstract_params(models, config.data.image_size)
  sources = {'tokenizer': FLAGS.tokenizer, 'super_res': FLAGS.super_res}
  params = {part: checkpoint.load_part(src, part, expected[part]) for part, src in sources.items()}
  out.mkdir(parents=True, exist_ok=True)
  for part, p in params.items():
    checkpoint.save_weights(out / f'{part}.safetensors', p)
  report(out)


def report(out: pathlib.Path) -> None:
  sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
  print(f'exported to {out}: ' + ', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in sorted(sizes.items())))


if __name__ == '__main__':
  define_config_flag('config', 'configs/shapes.py', 'Config file.')
  flags.DEFINE_string('tokenizer', None, 'Tokenizer workdir (or weights dir).', required=True)
  flags.DEFINE_string(
    'generator', None, 'Generator workdir (or weights dir); holds text (unless frozen CLIP) + generator.'
  )
  flags.DEFINE_string('out', None, 'Output weights directory.', required=True)
  flags.DEFINE_string('selector', None, 'Optional TCTS selector workdir (or weights dir).')
  flags.DEFINE_string('self_guidance', None, 'Optional self-guidance adapter workdir (or weights dir).')
  flags.DEFINE_string('super_res', None, 'With a super_res config: the super_res stage workdir (or weights dir).')
  flags.DEFINE_string('features', None, 'Optional FID-shapes feature network workdir (or weights dir).')
  run_main(main)

r"""aMUSEd (diffusers' `AmusedPipeline` checkpoints), run in JAX by our sampler: every strategy on a real
pretrained text-to-image MGM (tcts_jax/models/amused/).

Get the weights on a machine with internet (nothing downloads at run time), then sample:

  huggingface-cli download amused/amused-256 --local-dir ~/amused-256
  python -m tcts_jax.sample --config=configs/amused.py:256 --config.weights=~/amused-256 \
      --prompt="a photo of a red bicycle" --config.sampler.strategy=fas

The defaults are the pipeline's own: 12 steps, its confidence rule (Gumbel noise scaled linearly 2 -> 0),
cosine schedule with its count rule, guidance 10, the empty negative prompt, micro-conditioning
(width, height, 0, 0, aesthetic score 6). `tiny` is the tiny RANDOM aMUSEd the tests use
(tests/fixtures/tiny_amused, built with diffusers by tests/fixtures/make_tiny_amused.py): pictures of noise,
for checking that things run:

  python -m tcts_jax.sample --config=configs/amused.py:tiny --prompt="a red circle" --trajectory --out=amused_tiny.png

A TCTS selector for it (tcts_jax/training/external.py) trains on the frozen aMUSEd and any captioned dataset,
e.g. a folder of your images (tcts_jax/data/image_folder.py) at the checkpoint's image size; then every
strategy runs, tcts_fas included:

  python -m tcts_jax.data.image_folder --folder=FOLDER --image_size=256
  python -m tcts_jax.train --config=configs/amused.py:256,selector --config.weights=~/amused-256 \
      --config.data.folder=FOLDER --workdir=workdirs/amused/selector
  python -m tcts_jax.sample --config=configs/amused.py:256 --config.weights=~/amused-256 \
      --config.selector_weights=workdirs/amused/selector --config.sampler.strategy=tcts_fas --prompt="a red bicycle"
"""

import ml_collections

from tcts_jax.utils.config import REPO_ROOT, load_config

VARIANTS = {
  # variant: (weights dir, image size the checkpoint was trained at)
  '256': (None, 256),
  '512': (None, 512),
  'tiny': ('tests/fixtures/tiny_amused', 32),
}
STAGES = ('sample', 'selector')
# The TCTS selector per variant: 256 / 1024 tokens over 8192 codes, cross-attending to CLIP's 768-wide states.
SELECTOR_SIZES = {
  '256': dict(width=512, num_layers=4, num_heads=8),
  '512': dict(width=512, num_layers=4, num_heads=8),
  'tiny': dict(width=32, num_layers=1, num_heads=2),
}
SELECTOR_TRAIN = {
  '256': dict(batch_size=64, num_steps=20_000, learning_rate=3e-4, warmup_steps=1000, image_every=2000),
  '512': dict(batch_size=32, num_steps=20_000, learning_rate=3e-4, warmup_steps=1000, image_every=2000),
  'tiny': dict(batch_size=8, num_steps=6, warmup_steps=2, log_every=2, image_every=6, checkpoint_every=3),
}


def get_config(arg: str = '256') -> ml_collections.ConfigDict:
  """`arg` is '<variant>' or '<variant>,selector' (the selector stage)."""
  variant, _, stage = arg.partition(',')
  stage = stage or 'sample'
  if variant not in VARIANTS:
    raise ValueError(f'unknown aMUSEd variant {variant!r}; expected one of {tuple(VARIANTS)}')
  if stage not in STAGES:
    raise ValueError(f'unknown aMUSEd stage {stage!r}; expected one of {STAGES}')
  weights, image_size = VARIANTS[variant]
  shapes = load_config(f'{REPO_ROOT}/configs/shapes.py:selector')
  c = ml_collections.ConfigDict()
  c.model = 'amused'
  c.stage = stage
  c.seed = 0
  # A diffusers aMUSEd directory (transformer/, vqvae/, text_encoder/, tokenizer/, scheduler/).
  c.weights = ml_collections.FieldReference(weights, field_type=str)
  # Or 'bfloat16' (params and activations, half the memory; every XLA backend runs it, CPUs slowly).
  c.dtype = 'float32'
  c.micro_conditioning = dict(
    # The pipeline's micro-conditioning: the target (width, height), crop coordinates and aesthetic score.
    size=(image_size, image_size),
    crop_coord=(0, 0),
    aesthetic_score=6,
  )
  # The TCTS selector (training/external.py) and where the sampler finds its weights (a workdir or weights dir).
  c.selector = dict(
    **SELECTOR_SIZES[variant],
    mlp_ratio=4,
    label='corrupted',
    caption_dropout=0.1,
    # The generator's training corruption (uniform replacement of visible tokens) and CFG scale for x̂.
    corrupt_prob=0.1,
    generator_guidance=9.0,
  )
  c.selector_weights = ml_collections.FieldReference(None, field_type=str)
  # What the selector trains on: any registered captioned dataset at the checkpoint's image size.
  c.data = dict(
    name='image_folder',
    folder=ml_collections.FieldReference(None, field_type=str),
    test_fraction=0.1,
    data_dir=ml_collections.FieldReference(None, field_type=str),
    image_size=image_size,
  )
  c.train = dict(shapes.train.to_dict(), **SELECTOR_TRAIN[variant])
  c.sampler = shapes.sampler
  c.sampler.update(
    dict(
      strategy='confidence',
      steps=12,
      mask_schedule='cosine',
      count_rule='amused',
      confidence_noise=(2.0, 0.0),
      # Ours is c + g (c - u); the pipeline's u + 10 (c - u) is g = 9.
      guidance_scale=9.0,
      # FAS reads this transformer layer's self-attention (amused-256 has 22).
      fas_layer=1 if variant == 'tiny' else 11,
      forward_rows=0,  # one forward of the whole batch fills an accelerator
    )
  )
  c.lock()
  return c

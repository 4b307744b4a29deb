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

  python -m tcts_jax.sample --config=configs/amused.py:tiny --prompt="a red circle" --out=amused_tiny.png
"""

import ml_collections

from tcts_jax.utils.config import REPO_ROOT, load_config

VARIANTS = {
  # variant: (weights dir, image size the checkpoint was trained at)
  '256': (None, 256),
  '512': (None, 512),
  'tiny': ('tests/fixtures/tiny_amused', 32),
}


def get_config(arg: str = '256') -> ml_collections.ConfigDict:
  if arg not in VARIANTS:
    raise ValueError(f'unknown aMUSEd variant {arg!r}; expected one of {tuple(VARIANTS)}')
  weights, image_size = VARIANTS[arg]
  c = ml_collections.ConfigDict()
  c.model = 'amused'
  # A diffusers aMUSEd directory (transformer/, vqvae/, text_encoder/, tokenizer/, scheduler/).
  c.weights = ml_collections.FieldReference(weights, field_type=str)
  c.dtype = 'float32'  # or 'bfloat16': params and activations
  c.micro_conditioning = dict(
    # The pipeline's micro-conditioning: the target (width, height), crop coordinates and aesthetic score.
    size=(image_size, image_size),
    crop_coord=(0, 0),
    aesthetic_score=6,
  )
  c.sampler = load_config(f'{REPO_ROOT}/configs/shapes.py:sample').sampler
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
      fas_layer=1 if arg == 'tiny' else 11,
    )
  )
  c.lock()
  return c

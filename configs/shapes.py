r"""Captioned-shapes: the embedded benchmark and the default shipped model.

Each stage is trained with the same trainer:

  python -m tcts_jax.train --config=configs/shapes.py:tokenizer --workdir=workdirs/shapes/tokenizer
  python -m tcts_jax.train --config=configs/shapes.py:generator --workdir=workdirs/shapes/generator \
      --config.tokenizer_checkpoint=workdirs/shapes/tokenizer
  python -m tcts_jax.train --config=configs/shapes.py:selector --workdir=workdirs/shapes/selector \
      --config.generator_checkpoint=weights/shapes
  python -m tcts_jax.export --config=configs/shapes.py --workdirs=workdirs/shapes --out=weights/shapes

and sampled with (defaults to the shipped weights in weights/shapes):

  python -m tcts_jax.sample --config=configs/shapes.py --prompt="a large red circle in the middle"

The `tiny` variant (`configs/shapes.py:tokenizer,tiny`) shrinks everything for tests.
Every field can be overridden from the command line, e.g. `--config.generator.num_layers=2`.
"""

import ml_collections

STAGES = ('tokenizer', 'generator', 'selector', 'sample')


def get_config(arg: str = 'sample') -> ml_collections.ConfigDict:
  """`arg` is '<stage>' or '<stage>,tiny'."""
  parts = [p for p in arg.split(',') if p]
  stage = parts[0] if parts else 'sample'
  variants = set(parts[1:])
  if stage not in STAGES:
    raise ValueError(f'unknown stage {stage!r}; expected one of {STAGES}')
  if variants - {'tiny'}:
    raise ValueError(f'unknown config variant(s) {sorted(variants - {"tiny"})}')
  tiny = 'tiny' in variants

  c = ml_collections.ConfigDict()
  c.stage = stage
  c.seed = 0

  c.data = dict(
      name='captioned_shapes',
      config_name='tiny' if tiny else 'default',
      data_dir=ml_collections.FieldReference(None, field_type=str),
      image_size=32,
  )

  c.tokenizer = dict(
      channels=(16, 32) if tiny else (32, 64),
      num_res_blocks=1,
      codebook_size=64 if tiny else 256,
      code_dim=32,
      commitment_cost=0.25,
  )

  c.text = dict(
      max_length=40,
      width=32 if tiny else 128,
      num_layers=1 if tiny else 2,
      num_heads=2 if tiny else 4,
      # Words outside the vocabulary: 'error' (the CLI refuses them) or 'unk' (mapped to [UNK]).
      unknown_words='error',
  )

  c.generator = dict(
      width=32 if tiny else 128,
      num_layers=2 if tiny else 4,
      num_heads=2 if tiny else 4,
      mlp_ratio=4,
      # Training corruption (DESIGN §2): uniform replacement of visible tokens, loss weight of visible ones.
      corrupt_prob=0.1,
      visible_loss_weight=0.2,
      label_smoothing=0.1,
      caption_dropout=0.1,
  )

  c.train = dict(
      batch_size=16 if tiny else 64,
      num_steps=20 if tiny else (2500 if stage == 'tokenizer' else 5000),
      learning_rate=1e-3 if stage == 'tokenizer' else 6e-4,
      warmup_steps=5 if tiny else 200,
      weight_decay=0.01 if stage == 'generator' else 0.0,
      grad_clip=1.0,
      log_every=5 if tiny else 100,
      image_every=10 if tiny else 1000,
      checkpoint_every=10 if tiny else 500,
      keep_checkpoints=2,
  )
  if stage == 'selector':
    # ~0.3 s/step at batch 64 on 2 CPU cores (the frozen generator's CFG forward dominates): ~12 min.
    c.train.update(num_steps=20 if tiny else 2500, learning_rate=1e-3, warmup_steps=5 if tiny else 100,
                   weight_decay=0.01, image_every=10 if tiny else 500)
  # Where the generator stage finds the frozen tokenizer (a workdir or an exported weights dir).
  c.tokenizer_checkpoint = ml_collections.FieldReference(None, field_type=str)
  # Where the selector stage finds the frozen tokenizer + text encoder + generator: an exported weights
  # dir, or a generator workdir (then the tokenizer comes from tokenizer_checkpoint).
  c.generator_checkpoint = ml_collections.FieldReference(None, field_type=str)

  # The TCTS selector (DESIGN §4), trained on the frozen generator.
  c.selector = dict(
      width=32 if tiny else 128,
      num_layers=1 if tiny else 2,
      num_heads=2 if tiny else 4,
      mlp_ratio=4,
      # Positive label: 'corrupted' (the position was masked or replaced in the generator input) or
      # 'mismatch' (the sampled token differs from the real one).
      label='corrupted',
      caption_dropout=0.1,
      # CFG scale of the frozen generator when drawing x̂ for training (match the sampler's).
      generator_guidance=3.0,
  )

  c.sampler = dict(
      # A strategy name (uniform, purity, random_revoke, persistent, fas, tcts, tcts_fas), a switching
      # preset (u2r, r2u) or a per-step schedule 'uniform:8,random_revoke:8'.
      strategy='purity',
      steps=16,
      mask_schedule='cosine',
      persistent_weight=10.0,
      fas_base='random_revoke',
      fas_layer=1,
      fas_threshold=1.0,
      purity_noise=1.0,
      guidance_scale=3.0,
      guidance_schedule='constant',
      temperature=1.0,
      top_k=0,
      top_p=1.0,
      # Revocable strategies re-draw visible tokens each step unless this freezes them.
      freeze_visible=False,
      # TCTS (needs selector weights): keep logit = -sharpness * selector logit; Gumbel noise annealed
      # tcts_noise * (1 - t/T); selector CFG s_u + g (s_c - s_u) (g = 1: conditional score only).
      selector_guidance=1.0,
      tcts_sharpness=1.0,
      tcts_noise=1.0,
  )
  # The shipped weights, relative to the repository root (or an absolute path).
  c.weights = 'weights/shapes'
  c.lock()
  return c

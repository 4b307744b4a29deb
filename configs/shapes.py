r"""Captioned-shapes: the embedded benchmark and the default shipped model.

Each stage is trained with the same trainer:

  python -m tcts_jax.train --config=configs/shapes.py:tokenizer --workdir=workdirs/shapes/tokenizer
  python -m tcts_jax.train --config=configs/shapes.py:generator --workdir=workdirs/shapes/generator \
      --config.tokenizer_checkpoint=workdirs/shapes/tokenizer
  python -m tcts_jax.export --config=configs/shapes.py --tokenizer=workdirs/shapes/tokenizer \
      --generator=workdirs/shapes/generator --out=workdirs/shapes/export
  python -m tcts_jax.train --config=configs/shapes.py:selector --workdir=workdirs/shapes/selector \
      --config.generator_checkpoint=workdirs/shapes/export

and sampled with (defaults to the shipped weights in weights/shapes):

  python -m tcts_jax.sample --config=configs/shapes.py --prompt="a large red circle in the middle"

The FID-shapes feature network (not Inception; see tcts_jax/metrics/fid_shapes.py) and the eval job:

  python -m tcts_jax.train --config=configs/shapes.py:features --workdir=workdirs/shapes/features
  python -m tcts_jax.export --config=configs/shapes.py --tokenizer=workdirs/shapes/tokenizer \
      --generator=workdirs/shapes/generator --selector=workdirs/shapes/selector \
      --features=workdirs/shapes/features --out=weights/shapes
  python -m tcts_jax.evaluate --config=configs/shapes.py:eval --workdir=workdirs/shapes/eval
  python -m tcts_jax.evaluate --config=configs/shapes.py:eval,smoke --workdir=/tmp/eval_smoke   # ~1 min

Muse's super-resolution stage (docs/design.md §17) trains on the same scenes at 64 px: its tokenizer with
`tokenizer,x2`, then the `super_res` stage with --config.tokenizer_checkpoint (that tokenizer) on the frozen base
model (super_res.base_weights, default weights/shapes); export with the super_res config writes weights/shapes_x2.

launch/train_shapes.sh runs the whole recipe. The `tiny` variant (`configs/shapes.py:tokenizer,tiny`)
shrinks everything for tests. The `copy` variant (`configs/shapes.py:generator,copy`, any stage, also with
tiny) is the paper's regime: a generator that copies visible tokens and a selector trained on the inputs of
visible_tokens='keep' sampling (RECIPES below); its weights are weights/shapes_copy (`bash
launch/train_shapes.sh workdirs/shapes_copy weights/shapes_copy copy`). Every field can be overridden from
the command line, e.g. `--config.generator.num_layers=2`.
"""

import ml_collections

STAGES = ('tokenizer', 'generator', 'selector', 'self_guidance', 'super_res', 'sample', 'features', 'eval')
# smoke: eval only; x2: the same scenes at 64 px (the super_res stage's data, and its tokenizer's).
VARIANTS = ('tiny', 'smoke', 'copy', 'x2')
REFINE_METHODS = ('revision:selector', 'revision:random', 'masked:selector', 'masked:random')

# Model sizes per variant (big_vision's `decode_variant` idea: one table, no per-field ternaries).
SIZES = {
  'default': dict(
    # 1024 low-dimensional (l2-normalised) codes. 256 were too few (small squares and circles, which differ by
    # four corner pixels, came back as the same blob: 75% of objects kept); 4096 keep 96% but give the
    # generator a 4096-way choice it learns too slowly for the 1-hour schedule (results/one_hour_recipe/).
    tokenizer=dict(channels=(32, 64), codebook_size=1024),
    text=dict(width=128, num_layers=2, num_heads=4),
    generator=dict(width=128, num_layers=4, num_heads=4),
    selector=dict(width=128, num_layers=2, num_heads=4),
    features=dict(channels=(16, 32, 64), feature_dim=64),
  ),
  'tiny': dict(
    tokenizer=dict(channels=(16, 32), codebook_size=64),
    text=dict(width=32, num_layers=1, num_heads=2),
    generator=dict(width=32, num_layers=2, num_heads=2),
    selector=dict(width=32, num_layers=1, num_heads=2),
    features=dict(channels=(8, 16), feature_dim=16),
  ),
}

# Training recipe per variant (docs/design.md §2.4, §4.2): how the generator learns visible tokens, how the
# selector's examples are drawn, and where the weights trained so live.
RECIPES = {
  # The shipped model. The generator is trained to distrust visible tokens (10% of them replaced by random
  # codes, smoothed labels there too), so a revocable sampler that redraws them churns them; the selector
  # sees the generator's cosine ratios and x̂ redrawn at every position.
  'default': dict(
    generator=dict(corrupt_prob=0.1, visible_label_smoothing=0.1),
    selector=dict(ratio='cosine', visible_tokens='redraw'),
    weights='weights/shapes',
  ),
  # The paper's regime: its generator (VQ-Diffusion) copies visible tokens, so a revocable sampler changes a
  # token only by re-masking it. Visible tokens are almost never replaced (1e-3) and learned with sharp labels
  # (their loss weight is kept). The selector is trained as the TCTS authors train theirs (masked fraction
  # ~ U[0, 1]) and sees x̂ equal to the input at visible positions, as the sampler's visible_tokens='keep'
  # makes it. Weights trained with `bash launch/train_shapes.sh workdirs/shapes_copy weights/shapes_copy copy`
  # (the directory exists only once they are trained).
  'copy': dict(
    generator=dict(corrupt_prob=1e-3, visible_label_smoothing=0.0),
    selector=dict(ratio='uniform', visible_tokens='keep'),
    weights='weights/shapes_copy',
  ),
}

# The selector's draw of x̂ for training <- the sampler setting it follows.
SELECTOR_DRAW = dict(generator_guidance='guidance_scale', generator_temperature='temperature', generator_top_p='top_p')

# Training schedule per stage. Sized to train from scratch in ~1 hour on 2 CPU cores (launch/train_shapes.sh:
# 51 min measured). The generator's 2e-3 was measured against 1e-3 and 3e-3 on this schedule
# (results/one_hour_recipe/); the selector's step is mostly the frozen generator's CFG forward, and its
# training AUROC stops rising after ~300 steps.
TRAIN = dict(
  batch_size=64,
  num_steps=3000,
  learning_rate=1e-3,
  warmup_steps=200,
  weight_decay=0.0,
  grad_clip=1.0,
  log_every=100,
  image_every=1000,
  checkpoint_every=500,
  keep_checkpoints=2,
  # Devices (tcts_jax/utils/sharding.py): the batch is split over every mesh axis (-1: the devices the other
  # axes leave); params and optimizer state by partition_rules, (regex on a leaf's path, spec) pairs. 'fsdp'
  # splits each leaf's largest dimension divisible by the fsdp axis, so with fsdp 1 everything is replicated
  # (data parallel) and e.g. --config.train.mesh.fsdp=8 shards the state ZeRO-3 style over 8 devices.
  mesh=dict(data=-1, fsdp=1),
  partition_rules=(('.*', 'fsdp'),),
  # 'bfloat16': forward and backward passes on bf16 copies of the float32 params (softmax and losses float32).
  compute_dtype='float32',
)
TRAIN_STAGES = {
  'tokenizer': dict(num_steps=1200),
  'generator': dict(learning_rate=2e-3, weight_decay=0.01),
  'selector': dict(num_steps=400, warmup_steps=100, weight_decay=0.01, image_every=500),
  # Only the adapter trains; the authors' own fine-tuning converges within an epoch (their Fig. 5d).
  'self_guidance': dict(num_steps=1500, warmup_steps=100, image_every=500),
  # 256 tokens per image (4x the base generator's), so half the batch.
  'super_res': dict(batch_size=32, num_steps=2000, learning_rate=2e-3, weight_decay=0.01, image_every=500),
  'features': dict(num_steps=1500, learning_rate=2e-3, warmup_steps=100, image_every=0),
}
# Tests: a few steps of everything.
TINY_TRAIN = dict(batch_size=16, num_steps=20, warmup_steps=5, log_every=5, image_every=20, checkpoint_every=10)
TINY_TRAIN_STAGES = {
  'generator': dict(learning_rate=1e-3),
  'selector': dict(image_every=10),
  'self_guidance': dict(image_every=10),
  'super_res': dict(learning_rate=1e-3, image_every=10),
  'features': dict(image_every=0),
}


def get_config(arg: str = 'sample') -> ml_collections.ConfigDict:
  """`arg` is '<stage>' or '<stage>,<variant>,...': 'tiny', 'copy' (RECIPES) and, for eval, 'smoke'."""
  parts = [p for p in arg.split(',') if p]
  stage = parts[0] if parts else 'sample'
  variants = set(parts[1:])
  if stage not in STAGES:
    raise ValueError(f'unknown stage {stage!r}; expected one of {STAGES}')
  if variants - set(VARIANTS):
    raise ValueError(f'unknown config variant(s) {sorted(variants - set(VARIANTS))}')
  if 'smoke' in variants and stage != 'eval':
    raise ValueError("the 'smoke' variant is for the eval stage only")
  tiny = 'tiny' in variants
  size = SIZES['tiny' if tiny else 'default']
  recipe = RECIPES['copy' if 'copy' in variants else 'default']

  c = ml_collections.ConfigDict()
  c.stage = stage
  c.seed = 0

  # The dataset (tcts_jax/data/captioned_shapes.py): its TFDS config and where the TFDS files live.
  x2 = 'x2' in variants or stage == 'super_res'
  c.data = dict(
    name='captioned_shapes',
    # The TFDS config: tiny (512 / 128 records) for tests and the smoke eval, which then starts in seconds; _x2:
    # the same scenes at 64 px.
    config_name=('tiny' if tiny or 'smoke' in variants else 'default') + ('_x2' if x2 else ''),
    data_dir=ml_collections.FieldReference(None, field_type=str),
    image_size=64 if x2 else 32,
  )

  c.tokenizer = dict(
    **size['tokenizer'],
    num_res_blocks=1,
    code_dim=8,
    commitment_cost=0.25,
    # Reconstruction loss weight 1 + edge_weight * (colour step to a neighbour): see stages.edge_weights.
    edge_weight=10.0,
  )

  c.text = dict(
    # 'learned' (a word-level encoder trained with the generator; width, num_layers, num_heads are its size)
    # or 'clip' (a frozen CLIP text tower from clip_dir, a HF CLIP dir; its own size and tokenizer).
    encoder='learned',
    clip_dir=ml_collections.FieldReference(None, field_type=str),
    **size['text'],
    max_length=40,  # words, or CLIP tokens with encoder='clip' (at most the tower's positions)
    # Words outside the vocabulary: 'error' (the CLI refuses them) or 'unk' (mapped to [UNK]).
    unknown_words='error',
  )

  c.generator = dict(
    **size['generator'],
    mlp_ratio=4,
    # 'heads_first' (fastest on CPU), 'xla' or 'cudnn' (jax.nn.dot_product_attention; cuDNN's flash attention on
    # NVIDIA GPUs in bf16): how layers that return no attention maps attend (docs/design.md §8).
    attention='heads_first',
    # Training corruption (docs/design.md §2.4): uniform replacement of visible tokens (corrupt_prob, in
    # RECIPES), loss weight of visible ones, label smoothing of masked and (in RECIPES) visible positions.
    **recipe['generator'],
    visible_loss_weight=0.2,
    label_smoothing=0.1,
    caption_dropout=0.1,
  )

  train = dict(TRAIN, **TRAIN_STAGES.get(stage, {}))
  if tiny:
    train.update(TINY_TRAIN, **TINY_TRAIN_STAGES.get(stage, {}))
  c.train = train
  # Where the generator stage finds the frozen tokenizer (a workdir or an exported weights dir).
  c.tokenizer_checkpoint = ml_collections.FieldReference(None, field_type=str)
  # Where the selector stage finds the frozen tokenizer + text encoder + generator: an exported weights
  # dir, or a generator workdir (then the tokenizer comes from tokenizer_checkpoint).
  c.generator_checkpoint = ml_collections.FieldReference(None, field_type=str)

  # The TCTS selector (docs/design.md §4), trained on the frozen generator.
  c.selector = dict(
    **size['selector'],
    mlp_ratio=4,
    attention='heads_first',  # as the generator's
    # Positive label: 'corrupted' (the position was masked or replaced in the generator input) or
    # 'mismatch' (the sampled token differs from the real one).
    label='corrupted',
    caption_dropout=0.1,
    # How training examples match sampling (docs/design.md §4.2; values in RECIPES). ratio: the masked fraction
    # of the generator input, 'cosine' (the generator's training ratios) or 'uniform' (~ U[0, 1]).
    # visible_tokens: 'redraw' (x̂ drawn at every position) or 'keep' (x̂ = the input at visible positions,
    # as the sampler's visible_tokens='keep'). The frozen generator's CFG scale, temperature and top-p for x̂
    # (generator_guidance, generator_temperature, generator_top_p) follow the sampler's, set below.
    **recipe['selector'],
  )

  # Self-guidance (docs/design.md §15, Hur et al. 2024): an auxiliary model = the frozen generator plus a low-rank
  # adapter (rank, alpha: W + alpha/rank A B on its attention and MLP kernels), trained by the self_guidance stage
  # on error-token correction: substitution_rate of the visible tokens replaced by the generator's own samples,
  # the clean tokens predicted at masked and substituted positions. Sampled with sampler.self_guidance_scale > 0.
  c.self_guidance = dict(rank=8, alpha=8.0, substitution_rate=0.3, label_smoothing=0.1)

  # Muse's super-resolution stage (docs/design.md §17): a masked transformer over the 64 px scenes' tokens
  # (tokenizer: configs/shapes.py:tokenizer,x2, given as tokenizer_checkpoint) conditioned on the base model's
  # 8 x 8 tokens of the same scene and the caption. base_config builds the base model (32 px), whose text
  # encoder and VQ come frozen from base_weights (default: that config's weights). Its training corruption and
  # caption dropout are the generator section's; it samples with `sampler` at super_res_steps.
  c.super_res = dict(
    **size['generator'],
    mlp_ratio=4,
    low_res_layers=2,
    base_config='configs/shapes.py:sample' + (',tiny' if tiny else ''),
    base_weights=ml_collections.FieldReference(None, field_type=str),
    steps=8,  # Muse: the second stage needs few steps
  )

  c.sampler = dict(
    # A strategy name (tcts_jax.sampling.strategies.STRATEGIES: uniform, purity, ivqd_purity, confidence,
    # random_revoke, persistent, fas, tcts, tcts_fas, tcts_persistent, oracle, oracle_fas, halton, remdm,
    # entropy_bounded), a switching preset
    # (u2r, r2u), a per-step schedule 'uniform:8,random_revoke:8', or a dotted path to a strategy factory of
    # your own. oracle* need reference tokens (Sampler.__call__(..., reference_tokens=...)).
    strategy='purity',
    steps=16,
    mask_schedule='cosine',
    # Tokens kept per step: 'reserve' (ours: room left for every later step) or 'amused' (diffusers' rule).
    count_rule='reserve',
    persistent_weight=10.0,
    fas_base='random_revoke',
    # FAS map (docs/design.md §3): 'self_attention' (ours, after SAG: persistent weight where kept and the
    # attention received by layer fas_layer is <= fas_threshold) or 'cross_attention' (the authors' code:
    # fas_cross_weight * (1 - t/T) * their normalised cross-attention map added to every keep logit).
    fas_map='self_attention',
    fas_layer=1,
    fas_threshold=1.0,
    fas_cross_weight=3.0,
    purity_noise=1.0,
    # `ivqd_purity` (Improved VQ-Diffusion): token logits scaled by (1 + r * purity), r = this.
    ivqd_purity_weight=2.0,
    # `confidence` (aMUSEd's rule): Gumbel noise scaled linearly from the first value to the second.
    confidence_noise=(2.0, 0.0),
    guidance_scale=3.0,
    guidance_schedule='constant',
    # Self-guidance scale s (needs self_guidance weights): logits + s (logits - aux) on top of the guidance above.
    self_guidance_scale=0.0,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    # 'bfloat16': the generator, text encoder and selector run on bfloat16 copies of the weights (GPU/TPU);
    # logits, guidance, truncation and the draw stay float32, and so does decoding.
    compute_dtype='float32',
    # Rows (2 per image under guidance) per generator / selector forward, in one lax.map over chunks; 0: all rows
    # in one forward. Same math; on a CPU, chunks of 16 rows keep a large batch's attention in the caches (the
    # eval job's batch of 100 scenes samples 1.5x as fast per image: README, benchmarks/batch_throughput.py).
    # Batches of up to 8 images are not chunked. Accelerator configs (coco, amused) set 0.
    forward_rows=16,
    # 'keep': x̂ = x at every visible position (a revocable strategy re-masks tokens but never changes a kept
    # one in place); 'redraw': revocable strategies redraw visible tokens at every step (fixed ones never do).
    visible_tokens='keep',
    # TCTS (needs selector weights): keep logit = -sharpness * selector logit; Gumbel noise annealed
    # tcts_noise * (1 - t/T); selector CFG s_u + g (s_c - s_u) (g = 1: conditional score only).
    selector_guidance=1.0,
    tcts_sharpness=1.0,
    tcts_noise=1.0,
    # ReMDM (remdm): a visible token is re-masked with probability min(eta, sigma_max) ('cap') or
    # eta * sigma_max ('rescale'); 'loop': plain decoding, then a loop of steps that hold the visible count and
    # re-mask with min(eta, sigma_max), then decoding again, over the step fractions remdm_loop = (start, stop)
    # (ReMDM's t_on = 0.55, t_off = 0.05). EB-sampler (entropy_bounded): a step decodes the lowest-entropy masked
    # tokens while their entropies, less the largest, sum to <= eb_gamma nats. Neither is tuned (our choice).
    remdm_schedule='cap',
    remdm_eta=0.05,
    remdm_loop=(0.45, 0.95),
    eb_gamma=1.0,
  )
  # Selector examples are drawn as the sampler draws (docs/design.md §4.2): these follow the sampler's values
  # unless set themselves (setting one leaves the sampler's alone).
  for selector_key, sampler_key in SELECTOR_DRAW.items():
    c.selector[selector_key] = c.sampler.get_ref(sampler_key).identity()
  # The FID-shapes feature network (models/features.py; NOT Inception): a CNN classifying each grid cell's
  # object (or empty) and regressing the 4x4-pooled image; FID-shapes is computed on its `feature_dim`
  # penultimate activations. Trained with the `features` stage, exported as features.safetensors.
  c.features = dict(
    **size['features'],
    pooled_weight=1.0,  # weight of the pooled-image regression loss against the cell cross-entropy
  )

  if stage == 'eval':
    c.eval = _eval_config(tiny, 'smoke' in variants)

  # The shipped weights, relative to the repository root (or an absolute path).
  c.weights = recipe['weights'] + ('_x2' if stage == 'super_res' else '')
  c.lock()
  return c


# The eval job's rows (results/): the paper's Table 1 at 8, 16 and 25 steps, Table 5 at 16, Table 6's many-step
# rows, the oracle selector (TCTS with a perfect selector), the redraw of visible tokens (the old default), and
# refinement of uniform@16 (Table 4, eval.refinement). The regime rows (uniform@T up to T = N) and the
# trade-off sweep run as grids on the command line (results/README.md).
PAPER_GRID = (
  *(f'{strategy}@{steps}' for steps in (8, 16, 25) for strategy in ('uniform', 'purity', 'random_revoke', 'tcts_fas')),
  'fas@16',
  'persistent@16',
  'tcts@16',
  'tcts_persistent@16',
  'oracle@16',
  'oracle_fas@16',
  'random_revoke@16[visible_tokens=redraw]',
  'tcts_fas@16[visible_tokens=redraw]',
  'uniform@50',
  'random_revoke@50',
)
# Paired differences A - B to report (same captions and seeds; the interval to read for "does A beat B").
# Pairs naming rows a run does not have are skipped with a note.
PAPER_COMPARE = (
  ('uniform@8', 'uniform@50'),
  ('uniform@16', 'uniform@50'),
  ('purity@16', 'uniform@16'),
  ('tcts_fas@8', 'uniform@8'),
  ('tcts_fas@16', 'uniform@16'),
  ('tcts_fas@25', 'uniform@25'),
  ('tcts_fas@16', 'purity@16'),
  ('tcts_fas@8', 'random_revoke@8'),
  ('tcts_fas@16', 'random_revoke@16'),
  ('tcts_fas@25', 'random_revoke@25'),
  ('tcts@16', 'random_revoke@16'),
  ('fas@16', 'random_revoke@16'),
  ('persistent@16', 'random_revoke@16'),
  ('tcts_fas@16', 'tcts@16'),
  ('tcts_fas@16', 'tcts_persistent@16'),
  ('oracle@16', 'tcts@16'),
  ('oracle_fas@16', 'tcts_fas@16'),
  ('random_revoke@16', 'random_revoke@16[visible_tokens=redraw]'),
  ('tcts_fas@16', 'tcts_fas@16[visible_tokens=redraw]'),
  ('tcts_fas@16', 'uniform@50'),
  ('tcts_fas@16', 'random_revoke@50'),
  ('uniform@16 + revision (selector)', 'uniform@16 + revision (random)'),
  ('uniform@16 + masked (selector)', 'uniform@16 + masked (random)'),
  ('uniform@16 + revision (selector)', 'uniform@16'),
)


def _eval_config(tiny: bool, smoke: bool) -> dict:
  """The eval job (`python -m tcts_jax.evaluate`): what to generate and which metrics to compute.

  A sweep over sampler settings is a grid of entries with settings of their own, 'strategy@steps[key=value,...]'
  (any `sampler` field but strategy and steps), given on the command line of the eval command, settings
  chosen on the validation split (the tuples quoted for the shell; every row also reports its sampling
  diagnostics), e.g.

    --config.eval.split=validation --config.eval.refinement.base= \
    --config.eval.grid="('random_revoke@16','random_revoke@16[visible_tokens=redraw]','tcts_fas@16[top_p=0.9]')" \
    --config.eval.compare="(('random_revoke@16[visible_tokens=redraw]','random_revoke@16'),)"
  """
  if smoke:
    grid, num_images, batch_size, shard_size = ('purity@8', 'uniform@8', 'random_revoke@8'), 80, 40, 40
    if tiny:  # tests: few images, several shards; 8 per batch divides the 8 devices of the sharding test
      num_images, batch_size, shard_size = 24, 8, 8
  else:
    grid = PAPER_GRID
    num_images, batch_size, shard_size = (32, 16, 16) if tiny else (1000, 100, 200)
  # Paired differences A - B to report (same captions and seeds; the interval to read for "does A beat B").
  # Pairs naming rows a run does not have are skipped with a note.
  compare = (('purity@8', 'random_revoke@8'),) if smoke else PAPER_COMPARE
  return dict(
    # 'strategy@steps' (or [strategy, steps]); strategy: any sampler strategy, preset or schedule. A row of
    # other sampler settings: 'strategy@steps[key=value,...]', e.g. 'random_revoke@16[visible_tokens=redraw]'
    # (values read as int, float, bool or str; the row's name, in compare pairs too, is the entry as written).
    grid=grid,
    # The held-out split the rows are generated for: 'test' for results, 'validation' to choose settings.
    split='test',
    # Held-out captions: example i % split size for image i; image i's rng is fold_in(key(seed), i), the
    # same for every grid entry (paired comparisons) and any device count.
    num_images=num_images,
    compare=compare,
    batch_size=batch_size,  # per generation call, over all devices (padded to a multiple of them)
    shard_size=shard_size,  # images per saved shard file (the unit of resumption)
    seed=0,
    # Evaluators by name (tcts_jax/evaluation/evaluators/): 'alignment' is captioned shapes' own checker; an
    # evaluator that cannot run here (no weights) is skipped with its reason in the notes.
    metrics=('alignment', 'fid_shapes', 'clip_score', 'mid', 'inception_fid'),
    # The trade-off plot: per-image metric y against set metric x (against steps where x is missing).
    tradeoff=dict(y='object_accuracy', x='fid_shapes'),
    # Entries whose strategy needs weights that are not loaded (tcts* without a selector): skipped with a
    # message if True, an error if False. An unknown strategy is always an error.
    skip_unavailable=True,
    # fid_shapes: a dir holding features.safetensors or a `features` workdir; None or missing: skipped.
    features_weights=ml_collections.FieldReference(None if tiny else 'weights/shapes', field_type=str),
    # clip_score, mid: a HF CLIP dir (config.json, model.safetensors, tokenizer files); None: skipped.
    clip_weights=ml_collections.FieldReference(None, field_type=str),
    mid_eps=5e-4,  # ridge on MID covariances (the reference's suggestion for < ~30k samples)
    # inception_fid: a local pt_inception-2015-12-05 .npz / .safetensors (models/inception.py); None: skipped.
    inception_weights=ml_collections.FieldReference(None, field_type=str),
    inception_resize=299,
    # Selector source overriding the weights dir's selector.safetensors (a workdir or weights dir).
    selector_weights=ml_collections.FieldReference(None, field_type=str),
    bootstrap=1000,  # resamples of the images for the 95% confidence intervals
    reference_rows=True,  # also score re-rendered real scenes of the captions and their VQ reconstructions
    # Refinement rows (paper Table 4): the images of grid entry `base` refined by each method,
    # '<revision|masked>:<selector|random>'. revision: `rounds` rounds re-masking `revision_fraction` of the
    # tokens each, regenerated in `revision_steps`; masked: `masked_fraction` at once, `masked_steps`.
    # base None: no refinement rows. Methods whose chooser needs a missing selector follow skip_unavailable.
    refinement=dict(
      base=ml_collections.FieldReference('uniform@8' if smoke else (None if tiny else 'uniform@16'), field_type=str),
      methods=('revision:random',) if smoke else REFINE_METHODS,
      rounds=2 if smoke else 4,
      revision_fraction=0.25,
      revision_steps=4,
      masked_fraction=0.6,
      masked_steps=8,
    ),
  )

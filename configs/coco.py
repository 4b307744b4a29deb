r"""MS-COCO captions and CUB-200 birds at the paper's scale (TCTS paper §4): a 310M-parameter generator on
MS-COCO, 83M on CUB, 256 x 256 images as 32 x 32 tokens, 200 epochs. The stages are configs/shapes.py's
(`:tokenizer`, `:generator`, `:selector`, `:sample`, `:eval`) with the `copy` recipe (the generator copies
visible tokens, as the paper's does). `,smoke` shrinks everything to the tiny sizes at 32 px for CI and a
first try (a few steps of each stage on any COCO-layout directory, e.g. the fake one tests write).

  python -m tcts_jax.data.coco --folder=COCO_ROOT --year=2014 --split_file=dataset_coco.json --image_size=256
  python -m tcts_jax.train --config=configs/coco.py:tokenizer --config.data.folder=COCO_ROOT --workdir=...
  python -m tcts_jax.train --config=configs/coco.py:generator --config.data.folder=COCO_ROOT --workdir=... \
      --config.tokenizer_checkpoint=... --config.text.clip_dir=CLIP_DIR \
      --config.train.mesh.fsdp=8                                            # on a TPU slice: launch/README.md

Text conditioning is the paper's: the frozen CLIP ViT-B/32 text tower (77 tokens, width 512), read from a HF
CLIP directory the user has (--config.text.clip_dir=CLIP_DIR: config.json, model.safetensors, tokenizer
files); `,smoke` uses the tiny random CLIP the tests ship. --config.text.encoder=learned trains our word-level
encoder instead (width 512, 77 words). Where we differ from the paper, said plainly: the paper uses
VQ-Diffusion's pretrained VQ-VAE; here the VQ tokenizer is trained by our tokenizer stage. The generator's
size is matched to the paper's parameter count (benchmarks/paper_size.py: 309.8M with CLIP's 512-wide text
features). Nothing here has been trained at this size: launch/README.md estimates what it would cost.

`configs/coco.py:STAGE,cub` is CUB-200 (data.name 'cub', the 83M generator, Reed et al.'s captions).
`:eval` is the paper's protocol: 30,000 images for the test split's captions (Karpathy's test with
data.split_file, else val<year>), guidance and top-p as the paper's, FID against the held-out images with
Inception weights from a local file (eval.inception_weights), CLIP-S and MID with local CLIP weights
(eval.clip_weights; the paper's are ViT-L/14), resumable shard by shard on any number of devices and
processes (image i's key is fold_in(key(seed), i)).
"""

import pathlib

import ml_collections

from tcts_jax.utils.config import load_config

PAPER = {
  'coco': dict(
    data=dict(name='coco', year='2014', split_file=''),
    generator=dict(width=1024, num_layers=18, num_heads=16),  # 309.8M (benchmarks/paper_size.py)
    train_images=82_783,
  ),
  'cub': dict(
    data=dict(name='cub'),
    generator=dict(width=512, num_layers=19, num_heads=8),  # 83.6M
    train_images=8_855,
  ),
}
# 256 px -> 32 x 32 tokens (3 downsamplings), VQ-Diffusion's codebook size.
TOKENIZER = dict(channels=(64, 128, 256), codebook_size=2886)
# The learned encoder's size, for --config.text.encoder=learned (CLIP's own otherwise).
TEXT = dict(width=512, num_layers=4, num_heads=8, max_length=77, unknown_words='unk')
# A CLIP ViT-B/32 directory on the user's disk (no download at run time); ,smoke: the tests' tiny random CLIP.
SMOKE_CLIP_DIR, SMOKE_CLIP_LENGTH = 'tests/fixtures/tiny_clip', 16
SELECTOR = dict(width=512, num_layers=6, num_heads=8)
BATCH, EPOCHS = 256, 200
TRAIN = dict(
  batch_size=BATCH,
  learning_rate=4.5e-4,
  warmup_steps=5000,
  log_every=500,
  image_every=5000,
  checkpoint_every=2000,
  keep_checkpoints=3,
  compute_dtype='bfloat16',
)


def get_config(arg: str = 'sample') -> ml_collections.ConfigDict:
  parts = [p for p in arg.split(',') if p]
  dataset = 'cub' if 'cub' in parts else 'coco'
  smoke = 'smoke' in parts
  base = [p for p in parts if p not in ('cub', 'smoke')]
  stage = base[0] if base else 'sample'
  if stage == 'features':
    raise ValueError('the features stage trains on captioned shapes ground truth; COCO and CUB have none')
  variants = ['copy'] + (['tiny'] if smoke else []) + (['smoke'] if smoke and stage == 'eval' else [])
  c = load_config(f'{pathlib.Path(__file__).with_name("shapes.py")}:{",".join([stage, *variants])}')
  paper = PAPER[dataset]
  with c.unlocked():
    c.data = dict(
      **paper['data'],
      folder=ml_collections.FieldReference(None, field_type=str),  # the dataset's root directory
      data_dir=ml_collections.FieldReference(None, field_type=str),  # where the TFDS files live
      image_size=32 if smoke else 256,
    )
    c.text.unknown_words = 'unk'  # a prompt may use words the training captions never did
    c.text.encoder = 'learned' if stage == 'tokenizer' else 'clip'  # the tokenizer stage reads no text
    if smoke:
      c.text.update(clip_dir=SMOKE_CLIP_DIR, max_length=SMOKE_CLIP_LENGTH)
    else:
      c.tokenizer.update(TOKENIZER)
      c.text.update(TEXT)
      c.generator.update(paper['generator'])
      c.selector.update(SELECTOR)
      if stage in ('tokenizer', 'generator', 'selector'):
        c.train.update(TRAIN, num_steps=EPOCHS * paper['train_images'] // BATCH)
    c.weights = ml_collections.FieldReference(None, field_type=str)  # what export wrote (no shipped weights)
    # The paper's sampling settings: guidance 5 in its form u + 5 (c - u), 4 in ours (c + s (c - u)); top-p 0.86.
    c.sampler.guidance_scale = 4.0
    c.sampler.top_p = 0.86
    c.sampler.compute_dtype = 'bfloat16'  # as the training passes: forwards in bf16, logits and the draw float32
    c.sampler.forward_rows = 0  # one forward of the whole batch fills an accelerator
    # On NVIDIA GPUs `--config.generator.attention=cudnn` (and selector.attention) runs cuDNN's flash attention in
    # the layers that return no maps (docs/design.md §8); not yet measured on one (results/device/).
    if 'eval' in c:
      if not smoke:  # the paper's protocol: 30K images for the held-out captions (FID-30K, CLIP-S, MID-L)
        c.eval.update(num_images=30_000, batch_size=256, shard_size=1024)
      c.eval.metrics = ('clip_score', 'mid', 'inception_fid')
      c.eval.tradeoff = dict(y='clip_score', x='inception_fid')
      c.eval.features_weights = None
  return c

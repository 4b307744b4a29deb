r"""Our JAX sampler vs diffusers' `AmusedPipeline`, side by side on the same CPU, on the same random aMUSEd.

torch and diffusers are needed only here (and by the fixture scripts), never by the package or its tests:

  pip install -e .[bench]        # or: pip install torch==2.13.0 diffusers==0.42.1
  python benchmarks/vs_diffusers.py [--sizes=tiny,mid] [--batches=1,8] [--steps=12] [--repeats=3]

Models (random weights: speed does not depend on them), each a diffusers aMUSEd directory:
  tiny: tests/fixtures/tiny_amused (tests/fixtures/make_tiny_amused.py): 32x32 images, 8x8 tokens, 64 codes.
  mid:  built here with diffusers into a temporary directory (`build_mid_amused`): 256x256 images, 16x16 tokens,
        8192 codes, transformer width 256 x 4 layers (conv / attention blocks 128 wide), a 4-layer 512-wide CLIP
        text tower, a 5-level VQ of 8-32 channels.
Per size, the FLOPs of one CFG forward (the transformer on 2B rows, batch 1) from XLA's cost analysis (mid: 5.8
GFLOP; the text side, once, is 4.5 GFLOP and the VQ decode 1.5 GFLOP per image).

Both sides load the same directory: `AmusedPipeline.from_pretrained` (torch float32, torch's default thread
count, under `torch.inference_mode()`) and our `TextToImage` (configs/amused.py:tiny with weights = that dir).
For each batch, after one warm-up call (compilation, for JAX), the median of `repeats` full generations:
prompts -> decoded images (tokenizer, text encoder on prompts + empty negative prompts, `steps` CFG steps with
aMUSEd's sampling rule, VQ decode; diffusers with output_type='np', JAX until `block_until_ready`), the same
prompts and guidance (the pipeline's u + 10 (c - u) is our c + 9 (c - u)). Reported: images/s of each and
ratio = jax / diffusers (> 1: ours is faster). The two outputs are checked to have the same shape, dtype and
[0, 1] range (not the same pixels: the two draw with different RNGs). The LAST line printed is one JSON object.

Run it on an idle machine: with other work on the cores, torch's OpenMP threads wait on each other (seen on a
loaded 2-core machine: the tiny pipeline 12x slower with its 2 default threads than with OMP_NUM_THREADS=1).
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile

os.environ.setdefault('USE_TF', '0')

import jax
import jax.numpy as jnp
import numpy as np
import torch
from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from tcts_jax.api import TextToImage, load_config
from tcts_jax.utils.config import REPO_ROOT
from timing import compiled_flops, median_seconds

sys.path.insert(0, os.path.join(REPO_ROOT, 'tests', 'fixtures'))
from make_tiny_amused import MODEL_INDEX  # noqa: E402  (what AmusedPipeline.from_pretrained reads)
from make_tiny_clip import tiny_bpe  # noqa: E402  (the fixtures' tiny CLIP BPE vocabulary)

SIZES = ('tiny', 'mid')
TINY_DIR = os.path.join(REPO_ROOT, 'tests', 'fixtures', 'tiny_amused')
PIPELINE_GUIDANCE = 10.0  # the pipeline's u + g (c - u); ours is c + (g - 1) (c - u)
PROMPTS = [
  'a red circle left of a blue square',
  'the green triangle above the circle.',
  'a blue square above a red triangle',
  'the red square left of the green circle',
]
SEED = 0

# mid: a scaled-down amused-256 (hidden 1024 x 22 layers, 16x16 tokens, 8192 codes, CLIP-L text, 5-level VQ).
MID_GRID, MID_IMAGE, MID_CODEBOOK = 16, 256, 8192
MID_TEXT = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=8, projection_dim=512)
MID_TRANSFORMER = dict(
  hidden_size=256,
  num_hidden_layers=4,
  num_attention_heads=4,
  intermediate_size=704,  # amused-256's 2.75 x hidden
  in_channels=64,
  block_out_channels=128,
  block_num_heads=2,
  num_res_blocks=1,
  micro_cond_encode_dim=64,
)
MID_VQ_CHANNELS, MID_VQ_LATENT = (8, 16, 16, 32, 32), 16  # 5 levels: a 16x downsampling, as amused-256's VQ


def mid_text_encoder(vocab):
  config = CLIPTextConfig(
    vocab_size=len(vocab),
    max_position_embeddings=77,
    hidden_act='quick_gelu',
    bos_token_id=vocab['<|startoftext|>'],
    eos_token_id=vocab['<|endoftext|>'],
    pad_token_id=vocab['<|endoftext|>'],
    **MID_TEXT,
  )
  return CLIPTextModelWithProjection(config).eval()


def mid_transformer():
  vocab_size = MID_CODEBOOK + 64  # codebook + [MASK], rounded up as amused does (8192 + 64)
  return UVit2DModel(
    use_bias=False,
    cond_embed_dim=MID_TEXT['projection_dim'],
    micro_cond_embed_dim=5 * MID_TRANSFORMER['micro_cond_encode_dim'],
    encoder_hidden_size=MID_TEXT['hidden_size'],
    vocab_size=vocab_size,
    codebook_size=MID_CODEBOOK,
    downsample=False,
    upsample=False,
    sample_size=MID_GRID,
    **MID_TRANSFORMER,
  ).eval()


def mid_vqvae():
  return VQModel(
    in_channels=3,
    out_channels=3,
    down_block_types=('DownEncoderBlock2D',) * len(MID_VQ_CHANNELS),
    up_block_types=('UpDecoderBlock2D',) * len(MID_VQ_CHANNELS),
    block_out_channels=MID_VQ_CHANNELS,
    layers_per_block=1,
    act_fn='silu',
    latent_channels=MID_VQ_LATENT,
    norm_num_groups=4,
    num_vq_embeddings=MID_CODEBOOK,
    sample_size=MID_IMAGE,
    mid_block_add_attention=False,
    lookup_from_codebook=True,
    force_upcast=False,
  ).eval()


def build_mid_amused(directory):
  """A random mid-sized aMUSEd saved as diffusers does (save_pretrained per part + model_index.json)."""
  torch.manual_seed(0)
  vocab, merges = tiny_bpe()
  transformer = mid_transformer()
  parts = {
    'tokenizer': CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77),
    'text_encoder': mid_text_encoder(vocab),
    'transformer': transformer,
    'vqvae': mid_vqvae(),
    'scheduler': AmusedScheduler(mask_token_id=transformer.config.vocab_size - 1),
  }
  for name, part in parts.items():
    part.save_pretrained(os.path.join(directory, name))
  with open(os.path.join(directory, 'model_index.json'), 'w') as f:
    json.dump(MODEL_INDEX, f, indent=2)


@contextlib.contextmanager
def amused_directory(size):
  """The diffusers aMUSEd directory of `size`, alive for the `with` block."""
  if size == 'tiny':
    yield TINY_DIR
    return
  with tempfile.TemporaryDirectory(prefix='amused_mid_') as directory:
    build_mid_amused(directory)
    yield directory


def load_ours(directory, image_size):
  """Our TextToImage on `directory`, micro-conditioned on `image_size` as the pipeline is."""
  config = load_config(f'{REPO_ROOT}/configs/amused.py:tiny')
  with config.unlocked():
    config.weights = directory
    config.micro_conditioning.size = (image_size, image_size)
  return TextToImage.load(config)


def load_diffusers(directory):
  pipe = AmusedPipeline.from_pretrained(directory, dtype=torch.float32)
  pipe.set_progress_bar_config(disable=True)
  return pipe


def pipeline_image_size(pipe):
  """The pipeline's default height = width (what it micro-conditions on)."""
  return pipe.transformer.config.sample_size * pipe.vae_scale_factor


def prompts_for(batch):
  return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]


def cfg_forward_gflop(t2i):
  """GFLOP of one CFG transformer forward at batch 1 (2 rows: conditional + unconditional), by XLA."""
  model = t2i.model
  ids = jnp.asarray(t2i.encode_prompts(prompts_for(1)))
  context = jax.eval_shape(model.encode_text, t2i.params, ids, None)
  tokens = jax.ShapeDtypeStruct((2, model.num_tokens), jnp.int32)
  forward = jax.jit(lambda params, x, c: model.logits(params, x, c, None)[0])
  return compiled_flops(forward.lower(t2i.params, tokens, context).compile()) / 1e9


def jax_generation(t2i, steps):
  sampler = t2i.sampler(strategy='confidence', steps=steps, guidance_scale=PIPELINE_GUIDANCE - 1)
  return lambda prompts: sampler(t2i.params, t2i.encode_prompts(prompts), jax.random.key(SEED)).images


def diffusers_generation(pipe, steps):
  def generate(prompts):
    with torch.inference_mode():
      generator = torch.Generator().manual_seed(SEED)
      out = pipe(
        prompts, num_inference_steps=steps, guidance_scale=PIPELINE_GUIDANCE, generator=generator, output_type='np'
      )
    return out.images

  return generate


def timed(generate, prompts, repeats):
  """(median seconds of `generate(prompts)` after one warm-up call, the last output as a NumPy array)."""
  last = {}

  def run():
    last['images'] = generate(prompts)
    return last['images']

  seconds = median_seconds(run, repeats)
  return seconds, np.asarray(last['images'])


def check_same_kind(ours, theirs):
  """The two sides must make the same kind of images: shape, dtype and the [0, 1] range (pixels differ)."""
  problems = []
  if ours.shape != theirs.shape or ours.dtype != theirs.dtype:
    problems.append(f'jax {ours.dtype} {ours.shape} vs diffusers {theirs.dtype} {theirs.shape}')
  for name, images in (('jax', ours), ('diffusers', theirs)):
    if not (np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0):
      problems.append(f'{name} images outside [0, 1]: [{images.min()}, {images.max()}]')
  if problems:
    raise SystemExit('the two generations differ in kind: ' + '; '.join(problems))


def benchmark_size(directory, batches, steps, repeats):
  """Per batch: seconds, images/s and the images' shape and range for both sides; and the CFG forward GFLOP."""
  pipe = load_diffusers(directory)
  t2i = load_ours(directory, pipeline_image_size(pipe))
  gflop = cfg_forward_gflop(t2i)
  ours, theirs = jax_generation(t2i, steps), diffusers_generation(pipe, steps)
  rows = {}
  for batch in batches:
    prompts = prompts_for(batch)
    jax_s, jax_images = timed(ours, prompts, repeats)
    torch_s, torch_images = timed(theirs, prompts, repeats)
    check_same_kind(jax_images, torch_images)
    rows[batch] = dict(
      jax_s=jax_s,
      diffusers_s=torch_s,
      shape=jax_images.shape,
      range=(float(min(jax_images.min(), torch_images.min())), float(max(jax_images.max(), torch_images.max()))),
    )
  return gflop, rows


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--sizes', default='tiny,mid', help=f'comma-separated, from {SIZES}')
  parser.add_argument('--batches', default='1,8')
  parser.add_argument('--steps', type=int, default=12)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  sizes = [s.strip() for s in args.sizes.split(',') if s.strip()]
  unknown = [s for s in sizes if s not in SIZES]
  if unknown:
    parser.error(f'unknown size(s) {unknown}; expected some of {SIZES}')
  batches = [int(b) for b in args.batches.split(',')]

  results = {}
  for size in sizes:
    with amused_directory(size) as directory:
      results[size] = benchmark_size(directory, batches, args.steps, args.repeats)

  device = jax.devices()[0].device_kind
  print(f'device: {device} (JAX), torch {torch.__version__} with {torch.get_num_threads()} threads; {args.steps} steps')
  print(f'{"size":<6}{"batch":>6}{"jax s":>10}{"torch s":>10}{"jax img/s":>11}{"torch img/s":>13}{"ratio":>8}  images')
  summary = {}
  for size, (_, rows) in results.items():
    summary[size] = {}
    for batch, r in rows.items():
      jax_ips, torch_ips = batch / r['jax_s'], batch / r['diffusers_s']
      summary[size][str(batch)] = dict(
        jax_images_per_s=round(jax_ips, 3),
        diffusers_images_per_s=round(torch_ips, 3),
        ratio=round(jax_ips / torch_ips, 3),
      )
      low, high = r['range']
      print(
        f'{size:<6}{batch:>6}{r["jax_s"]:>10.3f}{r["diffusers_s"]:>10.3f}{jax_ips:>11.2f}{torch_ips:>13.2f}'
        f'{jax_ips / torch_ips:>8.2f}  {r["shape"]} in [{low:.3f}, {high:.3f}]'
      )
  for size, (gflop, _) in results.items():
    print(f'{size}: one CFG forward (transformer on 2 rows, batch 1) = {gflop:.3f} GFLOP (XLA cost analysis)')
    summary[f'{size}_gflop_per_cfg_forward'] = round(gflop, 4)
  summary.update(steps=args.steps, device=device, torch_threads=torch.get_num_threads())
  print(json.dumps(summary))


if __name__ == '__main__':
  main()

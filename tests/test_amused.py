"""aMUSEd behind our API and sampler, on the tiny random diffusers checkpoint tests/fixtures/tiny_amused: every
strategy runs, the sample CLI works, and bad checkpoints fail with one line."""

import shutil
import warnings

import jax
import numpy as np
import pytest

from tcts_jax.api import PromptTruncated, TextToImage
from tcts_jax.sampling.strategies import STRATEGIES, make_strategy
from tcts_jax.utils.config import load_config
from tests.conftest import REPO, run_cli

FIXTURE = REPO / 'tests/fixtures/tiny_amused'
TINY = '--config=configs/amused.py:tiny'
REFERENCE = np.load(REPO / 'tests/fixtures/tiny_amused_reference.npz')


@pytest.fixture(scope='module')
def t2i():
  return TextToImage.load(load_config('configs/amused.py:tiny'))


def test_the_text_state_is_the_pipelines_conditioning(t2i):
  """Prompts encode as the pipeline encodes them (same CLIP ids), and the negative half is the empty prompt."""
  prompts = [str(p) for p in REFERENCE['text_prompts']]
  np.testing.assert_array_equal(t2i.encode_prompts(prompts), REFERENCE['text_input_ids'])
  model = t2i.model
  ids = t2i.encode_prompts(prompts[:1])
  with_empty = model.encode_text(t2i.params, ids, None)
  explicit = model.encode_text(t2i.params, ids, t2i.encode_prompts(['']))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), with_empty, explicit)


def _needs_nothing_more(name: str) -> bool:
  """Neither a selector nor reference tokens."""
  strategy = make_strategy(name, load_config('configs/amused.py:tiny').sampler)
  return not (strategy.needs_selector or strategy.needs_reference)


NO_SELECTOR = [n for n in STRATEGIES if _needs_nothing_more(n)]


# Every strategy, one step each, in ONE compiled sampler (the sampler switches strategies per step, so each
# reads aMUSEd's outputs inside one program; the strategies' own properties are tests/test_sampler.py's).
EVERY_STRATEGY = ','.join(f'{name}:1' for name in NO_SELECTOR)


@pytest.mark.parametrize('strategy, steps', [(EVERY_STRATEGY, len(NO_SELECTOR)), ('u2r', 6)])
def test_every_strategy_samples_aMUSEd(t2i, strategy, steps):
  out = t2i.generate(
    ['a red circle left of a blue square'], num_samples=2, strategy=strategy, steps=steps, trajectory=True
  )
  assert out.images.shape == (2, 32, 32, 3) and out.images.dtype == np.uint8
  assert out.tokens.min() >= 0 and out.tokens.max() < 64  # codebook ids only, no [MASK] left
  kept = out.trajectory['kept'].sum(-1)
  np.testing.assert_array_equal(kept[:, 0], t2i.sampler(strategy=strategy, steps=steps).schedules.keep_counts)


def test_strategies_that_need_a_selector_say_so(t2i):
  with pytest.raises(ValueError, match='needs a TCTS selector'):
    t2i.generate(['a red circle'], strategy='tcts_fas')


def test_a_prompt_longer_than_clip_reads_is_cut_with_a_warning(t2i):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ids = t2i.encode_prompts(['a red ' * 60])
  assert ids.shape == (1, 77)
  expected = (
    'the prompt "a red a red a red a red a red a red a red a red a ..." has 122 tokens, more than the 77 the '
    'text encoder reads: its last 45 are dropped'
  )
  assert [str(w.message) for w in caught if w.category is PromptTruncated] == [expected]


def test_images_round_trip_through_the_vqgan(t2i):
  tokens = t2i.tokenize_images((REFERENCE['vq_images'].transpose(0, 2, 3, 1) * 255).round().astype(np.uint8))
  assert tokens.shape == (2, 64)
  np.testing.assert_array_equal(t2i.decode_tokens(REFERENCE['vq_indices']).shape, (2, 32, 32, 3))


def broken_copy(tmp_path, edit):
  target = tmp_path / 'amused'
  shutil.copytree(FIXTURE, target)
  edit(target)
  return target


BROKEN = {
  'no-vqvae': (lambda d: shutil.rmtree(d / 'vqvae'), 'is not a diffusers aMUSEd checkpoint: no vqvae/'),
  'no-tokenizer': (lambda d: shutil.rmtree(d / 'tokenizer') or (d / 'tokenizer').mkdir(), 'no CLIP tokenizer in'),
  'config-mismatch': (
    lambda d: (d / 'transformer/config.json').write_text(
      (d / 'transformer/config.json').read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3')
    ),
    'missing: transformer_layers_2',
  ),
  'pickle-only': (
    lambda d: [p.unlink() for p in (d / 'vqvae').glob('*.safetensors')] and (d / 'vqvae/model.bin').write_bytes(b''),
    'pickled weights are never loaded',
  ),
}


def test_a_bad_checkpoint_is_a_one_line_error_and_writes_nothing(tmp_path):
  edit, fragment = BROKEN['no-vqvae']
  directory = broken_copy(tmp_path, edit)
  r = run_cli(
    'tcts_jax.sample', TINY, f'--config.weights={directory}', '--prompt=a red circle', '--out=x.png', cwd=tmp_path
  )
  errors = [line for line in r.stderr.splitlines() if line.startswith('error: ')]
  assert r.returncode == 2 and len(errors) == 1 and fragment in errors[0], r.stderr[-2000:]
  assert not (tmp_path / 'x.png').exists()


@pytest.mark.parametrize('name', [n for n in BROKEN if n != 'no-vqvae'])
def test_bad_checkpoints_name_what_is_wrong(tmp_path, name):
  """(The CLI turns these exceptions into the one line above.)"""
  edit, fragment = BROKEN[name]
  config = load_config('configs/amused.py:tiny')
  with config.unlocked():
    config.weights = str(broken_copy(tmp_path, edit))
  with pytest.raises((ValueError, FileNotFoundError)) as caught:
    TextToImage.load(config)
  assert fragment in str(caught.value) and '\n' not in str(caught.value)


def test_bad_dtype_is_refused():
  config = load_config('configs/amused.py:tiny')
  with config.unlocked():
    config.dtype = 'float8'
  with pytest.raises(ValueError, match="dtype must be one of \\('float32', 'bfloat16'\\), got 'float8'"):
    TextToImage.load(config)


def test_inpainting_outpainting_editing_and_refinement_run_on_aMUSEd(t2i):
  """The editing operations are the one sampler on a locked canvas: only re-masked tokens can change."""
  from tcts_jax import editing

  tokens = t2i.generate(['a red circle'], num_samples=2, steps=4).tokens
  prompt = 'a blue circle left of a red square'
  region = editing.rect_to_token_mask((0, 0, 16, 16), t2i.models.grid_size, 32, 32)
  results = {
    'inpaint': editing.inpaint(t2i, tokens, prompt, region, jax.random.key(1), steps=4),
    'outpaint': editing.inpaint(t2i, tokens, prompt, region, jax.random.key(2), outpaint=True, steps=4),
    'edit': editing.edit(t2i, tokens, prompt, 'blue', jax.random.key(3), steps=4),
    'revision': editing.refine_revision(t2i, tokens, prompt, jax.random.key(4), rounds=2, chooser='random'),
    'masked': editing.refine_masked(t2i, tokens, prompt, jax.random.key(5), chooser='random', steps=4),
  }
  for name, result in results.items():
    assert result.images.shape == (2, 32, 32, 3), name
    np.testing.assert_array_equal(result.tokens[~result.remasked], tokens[~result.remasked], err_msg=name)
  np.testing.assert_array_equal(results['inpaint'].remasked[0], region)
  np.testing.assert_array_equal(results['outpaint'].remasked[0], ~region)
  assert results['edit'].notes == ['no selector weights loaded: the re-mask weights are the cross-attention map alone']


def test_the_edit_cli_on_aMUSEd(tmp_path):
  """(refine shares its inputs and the sampler; test_docs_commands runs the selector recipe's CLIs on aMUSEd)"""
  import PIL.Image

  PIL.Image.fromarray((REFERENCE['vq_images'][0].transpose(1, 2, 0) * 255).astype(np.uint8)).save(tmp_path / 'in.png')
  common = [TINY, '--image=in.png', '--prompt=a blue circle']
  r = run_cli('tcts_jax.edit', *common, '--word=blue', '--out=edit.png', cwd=tmp_path)
  assert r.returncode == 0 and (tmp_path / 'edit.png').is_file(), r.stderr[-2000:]


def test_bfloat16_loads_and_samples():
  """bf16 params (half the memory) load and sample (each part's closeness to fp32 is tested with the part)."""
  config = load_config('configs/amused.py:tiny')
  with config.unlocked():
    config.dtype = 'bfloat16'
  half = TextToImage.load(config)
  assert jax.tree.leaves(half.params['transformer'])[0].dtype == jax.numpy.bfloat16
  out = half.generate(['a red circle'], num_samples=2, steps=4)
  assert out.images.shape == (2, 32, 32, 3) and out.tokens.max() < 64


def test_the_selector_stage_on_aMUSEd_makes_examples_loss_and_picture():
  """The stage's pieces on a hand-made batch (the CLI recipe runs in test_docs_commands.py)."""
  from tcts_jax.training.external import AmusedSelectorStage

  stage = AmusedSelectorStage(load_config('configs/amused.py:tiny,selector'))
  images = (REFERENCE['vq_images'].transpose(0, 2, 3, 1) * 255).astype(np.uint8)
  batch = {
    'image': images,
    'codes': stage.encode_images(stage.frozen(), images),
    'text_ids': np.stack([stage.tokenize('a red circle'), stage.tokenize('a blue square')]),
  }
  # The checkpoint's own VQ codes (the reference encoded float images; uint8 rounding flips a near tie or two).
  assert np.mean(np.asarray(batch['codes']) == REFERENCE['vq_indices']) > 0.95
  frozen = stage.frozen()
  params = jax.jit(stage.init)(jax.random.key(0), batch)
  examples = jax.jit(stage.examples)(frozen, batch, jax.random.key(1))
  assert examples['x_hat'].shape == (2, 64) and examples['x_hat'].max() < 64
  loss, metrics = jax.jit(stage.loss)(params, frozen, batch, jax.random.key(2))
  assert np.isfinite(loss) and 0 <= metrics['positive_rate'] <= 1
  assert jax.jit(stage.images)(params, frozen, batch).shape == (4 * 32, 2 * 32, 3)

"""Bad input, every command: one `error:` line naming the bad value, exit status 2, no traceback, no output
left behind, and no existing checkpoint or result changed.

One table of cases over every CLI and every kind of input it takes. The cases run in one process that
imports the commands once and forks per case (tests/cli_batch.py), exactly as `python -m module args`.
Placeholders in a case's arguments are filled by the `inputs` fixture.
"""

import hashlib
import shutil

import PIL.Image
import pytest

from tcts_jax.data import shapes
from tests.conftest import REPO, run_cli_batch

TINY = '--config=configs/shapes.py:sample,tiny'
TOKENIZER = ('--config=configs/shapes.py:tokenizer,tiny', '--config.data.data_dir=DATA')
GENERATOR = ('--config=configs/shapes.py:generator,tiny', '--config.data.data_dir=DATA', '--workdir=OUT/w')
SAMPLE = (TINY, '--weights=WEIGHTS', '--out=OUT/x.png')
PROMPT = '--prompt=a large red circle in the middle'
EDIT = (TINY, '--weights=WEIGHTS', '--image=IMAGE', '--out=OUT/x.png')
EXPORT = (TINY, '--tokenizer=WORKDIR', '--generator=WEIGHTS')
EVAL = (
  '--config=configs/shapes.py:eval,smoke,tiny',
  '--weights=WEIGHTS',
  '--config.data.data_dir=DATA',
  '--config.eval.features_weights=',
  '--workdir=OUT/eval',
)

# (id, module, args, fragments the one error line must contain)
CASES = [
  # train: config files, stages, variants, keys, types, ranges, non-finite numbers, workdirs, inputs
  ('train-stage', 'train', ['--config=configs/shapes.py:generatr', '--workdir=OUT/w'], ["unknown stage 'generatr'"]),
  ('train-variant', 'train', ['--config=configs/shapes.py:tokenizer,huge', '--workdir=OUT/w'], ["['huge']"]),
  ('train-config-file', 'train', ['--config=configs/nope.py', '--workdir=OUT/w'], ['configs/nope.py']),
  ('train-no-workdir', 'train', [*TOKENIZER], ['--workdir']),
  ('train-workdir-file', 'train', [*TOKENIZER, '--workdir=FILE'], ['FILE', 'not a directory']),
  ('train-unknown-key', 'train', [*TOKENIZER, '--workdir=OUT/w', '--config.train.nmu_steps=5'], ['nmu_steps']),
  ('train-type', 'train', [*TOKENIZER, '--workdir=OUT/w', '--config.train.num_steps=ten'], ['ten']),
  (
    'train-negative',
    'train',
    [*TOKENIZER, '--workdir=OUT/w', '--config.train.num_steps=-5'],
    ['train.num_steps', 'got -5'],
  ),
  (
    'train-nan',
    'train',
    [*TOKENIZER, '--workdir=OUT/w', '--config.train.learning_rate=nan'],
    ['train.learning_rate', 'got nan'],
  ),
  (
    'train-batch',
    'train',
    [*TOKENIZER, '--workdir=OUT/w', '--config.train.batch_size=0'],
    ['train.batch_size', 'got 0'],
  ),
  (
    'train-existing-workdir',
    'train',
    [*TOKENIZER, '--workdir=WORKDIR', '--config.train.learning_rate=-1'],
    ['learning_rate', '-1'],
  ),
  ('train-data-dir-file', 'train', [*TOKENIZER, '--workdir=OUT/w', '--config.data.data_dir=FILE'], ['FILE']),
  ('train-tokenizer-missing', 'train', [*GENERATOR, '--config.tokenizer_checkpoint=MISSING'], ['MISSING']),
  ('train-tokenizer-corrupt', 'train', [*GENERATOR, '--config.tokenizer_checkpoint=CORRUPT'], ['corrupt', 'CORRUPT']),
  (
    'train-tokenizer-mismatch',
    'train',
    [*GENERATOR, f'--config.tokenizer_checkpoint={REPO}/weights/scenes'],
    ['does not match the config'],
  ),
  ('train-text-encoder', 'train', [*GENERATOR, '--config.text.encoder=bert'], ["'bert'", 'text.encoder']),
  (
    'train-clip-dir-missing',
    'train',
    [*GENERATOR, '--config.text.encoder=clip', '--config.text.clip_dir=MISSING'],
    ['CLIP directory', 'MISSING'],
  ),
  (
    'train-clip-length',
    'train',
    [*GENERATOR, '--config.text.encoder=clip', f'--config.text.clip_dir={REPO}/tests/fixtures/tiny_clip'],
    ['text.max_length', 'got 40'],
  ),
  (
    'train-folder-missing',
    'train',
    ['--config=configs/image_folder.py:tokenizer,tiny', '--config.data.folder=MISSING', '--workdir=OUT/w'],
    ['MISSING'],
  ),
  # sample: prompts, strategies, sampler values, weights, outputs
  ('sample-empty-prompt', 'sample', [*SAMPLE, '--prompt=   '], ['empty prompt']),
  ('sample-unknown-word', 'sample', [*SAMPLE, '--prompt=a red zebra'], ['zebra', 'not in the vocabulary']),
  ('sample-strategy', 'sample', [*SAMPLE, PROMPT, '--config.sampler.strategy=nope'], ["'nope'"]),
  (
    'sample-schedule',
    'sample',
    [*SAMPLE, PROMPT, '--config.sampler.strategy=uniform:4,nope:12'],
    ["'nope'"],
  ),
  ('sample-unknown-key', 'sample', [*SAMPLE, PROMPT, '--config.sampler.no_such_key=1'], ['no_such_key']),
  ('sample-steps', 'sample', [*SAMPLE, PROMPT, '--config.sampler.steps=0'], ['steps', '0']),
  ('sample-weight', 'sample', [*SAMPLE, PROMPT, '--config.sampler.persistent_weight=-1'], ['persistent_weight']),
  ('sample-guidance-inf', 'sample', [*SAMPLE, PROMPT, '--config.sampler.guidance_scale=inf'], ['guidance_scale']),
  ('sample-temperature', 'sample', [*SAMPLE, PROMPT, '--config.sampler.temperature=0'], ['temperature']),
  ('sample-dtype', 'sample', [*SAMPLE, PROMPT, '--config.sampler.compute_dtype=float16'], ["'float16'"]),
  ('sample-remdm-eta', 'sample', [*SAMPLE, PROMPT, '--config.sampler.remdm_eta=1.5'], ['remdm_eta', '1.5']),
  ('sample-remdm-schedule', 'sample', [*SAMPLE, PROMPT, '--config.sampler.remdm_schedule=spiral'], ["'spiral'"]),
  ('sample-eb-gamma', 'sample', [*SAMPLE, PROMPT, '--config.sampler.eb_gamma=-1.0'], ['eb_gamma', '-1']),
  ('sample-num-samples', 'sample', [*SAMPLE, PROMPT, '--num_samples=0'], ['num_samples', '0']),
  ('sample-no-clip-files', 'sample', [*SAMPLE, PROMPT, '--config.text.encoder=clip'], ['CLIP directory', 'clip_text']),
  ('sample-model-size', 'sample', [*SAMPLE, PROMPT, '--config.generator.width=64'], ['does not match the config']),
  ('sample-weights-missing', 'sample', [TINY, '--weights=MISSING', '--out=OUT/x.png', PROMPT], ['MISSING']),
  ('sample-weights-corrupt', 'sample', [TINY, '--weights=CORRUPT', '--out=OUT/x.png', PROMPT], ['corrupt']),
  ('sample-no-selector', 'sample', [*SAMPLE, PROMPT, '--config.sampler.strategy=tcts'], ['selector']),
  ('sample-out-dir-missing', 'sample', [TINY, '--weights=WEIGHTS', PROMPT, '--out=OUT/no/x.png'], ['OUT/no']),
  ('sample-out-is-dir', 'sample', [TINY, '--weights=WEIGHTS', PROMPT, '--out=DIR'], ['DIR']),
  ('sample-out-extension', 'sample', [TINY, '--weights=WEIGHTS', PROMPT, '--out=OUT/x.txt'], ['x.txt']),
  # refine and edit: images, prompts, words, rectangles, selectors, numbers
  ('refine-image-missing', 'refine', [*EDIT, PROMPT, '--chooser=random', '--image=MISSING'], ['MISSING']),
  ('refine-image-not-image', 'refine', [*EDIT, PROMPT, '--chooser=random', '--image=TEXTPNG'], ['TEXTPNG']),
  ('refine-no-selector', 'refine', [*EDIT, PROMPT], ['needs TCTS selector weights', '--chooser=random']),
  (
    'refine-wrong-selector',
    'refine',
    [*EDIT, PROMPT, f'--selector={REPO}/weights/scenes'],
    ['selector', 'does not match the config'],
  ),
  ('refine-fraction', 'refine', [*EDIT, PROMPT, '--chooser=random', '--fraction=1.5'], ['fraction', '1.5']),
  ('refine-rounds', 'refine', [*EDIT, PROMPT, '--chooser=random', '--rounds=0'], ['rounds', '0']),
  ('refine-mode', 'refine', [*EDIT, PROMPT, '--mode=bogus'], ['bogus']),
  ('edit-word', 'edit', [*EDIT, PROMPT, '--word=blue'], ["'blue'", 'not in the prompt']),
  ('edit-no-operation', 'edit', [*EDIT, PROMPT], ['--word', '--inpaint', '--outpaint']),
  ('edit-empty-mask', 'edit', [*EDIT, PROMPT, '--outpaint=0,0,32,32'], ['empty mask']),
  ('edit-rectangle-form', 'edit', [*EDIT, PROMPT, '--inpaint=1,2,3'], ['1,2,3']),
  ('edit-rectangle-order', 'edit', [*EDIT, PROMPT, '--inpaint=20,20,10,10'], ['(20, 20, 10, 10)']),
  ('edit-noise', 'edit', [*EDIT, PROMPT, '--word=red', '--noise=2'], ['noise', '2']),
  # export
  (
    'export-tokenizer-missing',
    'export',
    [TINY, '--tokenizer=MISSING', '--generator=WEIGHTS', '--out=OUT/e'],
    ['MISSING'],
  ),
  (
    'export-wrong-stage',
    'export',
    [TINY, '--tokenizer=WORKDIR', '--generator=WORKDIR', '--out=OUT/e'],
    ["no 'generator' weights"],
  ),
  ('export-out-is-file', 'export', [*EXPORT, '--out=FILE'], ['FILE']),
  # evaluate
  ('eval-grid', 'evaluate', [*EVAL, "--config.eval.grid=('purity@8', 'nope@8')"], ['nope@8', 'unknown strategy']),
  ('eval-grid-form', 'evaluate', [*EVAL, "--config.eval.grid=('purity',)"], ['bad eval.grid entry']),
  ('eval-num-images', 'evaluate', [*EVAL, '--config.eval.num_images=-1'], ['num_images', '-1']),
  ('eval-shard-size', 'evaluate', [*EVAL, '--config.eval.shard_size=0'], ['eval.shard_size']),
  ('eval-metric', 'evaluate', [*EVAL, "--config.eval.metrics=('alignment', 'nope')"], ["unknown metric 'nope'"]),
  ('eval-compare', 'evaluate', [*EVAL, "--config.eval.compare=('purity@8',)"], ['bad eval.compare pair']),
  (
    'eval-refinement',
    'evaluate',
    [*EVAL, "--config.eval.refinement.methods=('revision:oracle',)"],
    ['revision:oracle'],
  ),
  ('eval-workdir-file', 'evaluate', [*EVAL, '--workdir=FILE'], ['FILE']),
  ('eval-existing-results', 'evaluate', [*EVAL, '--workdir=RESULTS', '--config.eval.bootstrap=-3'], ['bootstrap']),
  ('eval-split', 'evaluate', [*EVAL, '--config.eval.split=dev'], ["'dev'"]),
  (
    'eval-too-few-images',
    'evaluate',
    [*EVAL, '--config.eval.num_images=8', '--config.eval.features_weights=FEATURES'],
    ['FID-shapes needs more images', '16 feature dimensions'],
  ),
  (
    'eval-refinement-base',
    'evaluate',
    [*EVAL, '--config.eval.refinement.base=purity@16'],
    ['eval.refinement.base', 'not an eval.grid entry'],
  ),
  ('eval-duplicate-metric', 'evaluate', [*EVAL, "--config.eval.metrics=('alignment', 'alignment')"], ['duplicate']),
  # the eval helpers
  ('tokenizer-eval-missing', 'tokenizer_eval', [*TOKENIZER, '--tokenizer=MISSING'], ['MISSING']),
  ('tokenizer-eval-count', 'tokenizer_eval', [*TOKENIZER, '--tokenizer=WEIGHTS', '--num_images=0'], ['num_images']),
  (
    'selector-eval-missing',
    'selector_eval',
    ['--config=configs/shapes.py:selector,tiny', '--config.generator_checkpoint=WEIGHTS', '--selector=MISSING'],
    ['MISSING'],
  ),
  # datasets
  ('shapes-tfds-config', 'data.shapes_tfds', ['--config=bogus', '--data_dir=OUT/t'], ["'bogus'"]),
  ('image-folder-missing', 'data.image_folder', ['--folder=MISSING', '--data_dir=OUT/t'], ['MISSING']),
  ('image-folder-bad-line', 'data.image_folder', ['--folder=BADFOLDER', '--data_dir=OUT/t'], ['not a JSON object']),
  # aMUSEd
  (
    'amused-variant',
    'sample',
    ['--config=configs/amused.py:1024', PROMPT, '--out=OUT/x.png'],
    ["unknown aMUSEd variant '1024'"],
  ),
  (
    'amused-weights-missing',
    'sample',
    ['--config=configs/amused.py:tiny', '--config.weights=MISSING', PROMPT, '--out=OUT/x.png'],
    ['MISSING'],
  ),
]


def digest(root) -> dict:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob('*') if p.is_file()}


@pytest.fixture(scope='module')
def inputs(tmp_path_factory, tiny_weights, tiny_data_dir, tiny_features):
  """Placeholder -> path: inputs of every kind, good and bad, and existing results the cases must not touch."""
  root = tmp_path_factory.mktemp('bad_input')
  paths = {'WEIGHTS': root / 'weights', 'WORKDIR': root / 'workdir', 'RESULTS': root / 'results'}
  shutil.copytree(tiny_weights, paths['WEIGHTS'])
  shutil.copytree(tiny_weights.parent / 'tokenizer', paths['WORKDIR'])  # a trainer workdir with checkpoints
  paths['RESULTS'].mkdir()
  (paths['RESULTS'] / 'results.json').write_text('{"rows": []}\n')
  paths['CORRUPT'] = root / 'corrupt'
  shutil.copytree(tiny_weights, paths['CORRUPT'])
  for f in paths['CORRUPT'].glob('*.safetensors'):
    f.write_bytes(f.read_bytes()[:100])
  paths['IMAGE'] = root / 'in.png'
  PIL.Image.fromarray(shapes.make_example(0, 3)['image']).save(paths['IMAGE'])
  paths['TEXTPNG'] = root / 'notes.png'
  paths['TEXTPNG'].write_text('not an image\n')
  paths['FILE'] = root / 'a_file'
  paths['FILE'].write_text('')
  paths['DIR'] = root / 'a_dir.png'  # a directory named like an image
  paths['DIR'].mkdir()
  paths['BADFOLDER'] = root / 'bad_folder'
  paths['BADFOLDER'].mkdir()
  PIL.Image.new('RGB', (8, 8)).save(paths['BADFOLDER'] / 'a.png')
  (paths['BADFOLDER'] / 'captions.jsonl').write_text('{"file_name": "a.png", "caption": "x"\n')
  paths['MISSING'] = root / 'missing'
  paths['DATA'] = tiny_data_dir
  paths['FEATURES'] = tiny_features
  return root, paths


@pytest.fixture(scope='module')
def results(inputs):
  """Every case run once: ({case id: CompletedProcess}, {case id: its output dir}, the placeholders' paths, and
  the digests of the existing weights, workdir and results before and after)."""
  root, paths = inputs
  before = {name: digest(paths[name]) for name in ('WEIGHTS', 'WORKDIR', 'RESULTS')}
  runs, outs = [], {}
  for case_id, module, args, _ in CASES:
    outs[case_id] = root / 'out' / case_id
    outs[case_id].mkdir(parents=True)
    filled = []
    for arg in args:
      for name, path in {'OUT': outs[case_id], **paths}.items():
        arg = arg.replace(f'={name}', f'={path}')
      filled.append(arg)
    runs.append((f'tcts_jax.{module}', filled, outs[case_id]))
  done = dict(zip([c[0] for c in CASES], run_cli_batch(runs), strict=True))
  after = {name: digest(paths[name]) for name in ('WEIGHTS', 'WORKDIR', 'RESULTS')}
  return done, outs, paths, before, after


def test_at_least_thirty_cases_over_every_command():
  assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
  modules = {c[1] for c in CASES}
  for module in ('train', 'sample', 'evaluate', 'refine', 'edit', 'export', 'tokenizer_eval', 'selector_eval'):
    assert module in modules


@pytest.mark.parametrize('case_id, module, args, fragments', CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(results, case_id, module, args, fragments):
  done, outs, paths, _, _ = results
  r = done[case_id]
  errors = [line for line in r.stderr.splitlines() if line.startswith('error: ')]
  assert r.returncode == 2 and len(errors) == 1, (r.returncode, r.stderr[-2000:])
  assert 'Traceback' not in r.stderr, r.stderr[-2000:]
  for fragment in fragments:
    assert str(paths.get(fragment, fragment)).replace('OUT', str(outs[case_id])) in errors[0], errors[0]
  assert not list(outs[case_id].iterdir()), f'{case_id} left {sorted(p.name for p in outs[case_id].iterdir())}'


def test_no_existing_checkpoint_or_result_changed(results):
  _, _, _, before, after = results
  assert before == after

"""Every command the docs show runs as written: the README's, the configs' and the commands' docstrings.

Commands are read from the files themselves, so a doc that drifts from the code fails here. Each distinct
command runs once, from a directory outside the repository (configs and shipped weights are found from
anywhere), with these changes only:
- outputs go to a temporary directory (workdirs/, /tmp/..., --out=...; never over the shipped weights), and
  placeholders (FOLDER, IN.png, CLIP_DIR, "...") are filled with small inputs the test writes;
- long jobs are cut short: captioned shapes' tiny TFDS split instead of the 50k one, 2 train steps, the eval
  job on 8 images, one grid entry of 4 steps and one refinement round, and the commands that train and use
  a workdir of their own run in the `tiny` variant of their config;
- aMUSEd commands run on the tiny random checkpoint the tests ship (`configs/amused.py:tiny`, 32 px) instead
  of the downloaded amused-256 / 512.
Commands that differ only in where they write (--out) run once.
Commands of one chain (those sharing workdirs) run in the docs' order; chains run two at a time, in one process
that imports the commands once and forks per command (tests/cli_batch.py).
"""

import json
import re
import shlex

import PIL.Image
import pytest

from tcts_jax.data import shapes
from tests.conftest import REPO, run_cli_batch
from tests.test_coco_cub import write_coco, write_cub

DOCS = [
  'README.md',
  'configs/shapes.py',
  'configs/scenes.py',
  'configs/image_folder.py',
  'configs/amused.py',
  *sorted(str(p.relative_to(REPO)) for p in [*REPO.glob('tcts_jax/*.py'), *REPO.glob('tcts_jax/data/*.py')]),
]
COMMAND = re.compile(r'^(?:pip install \S+ \S+ \S+ \S+ && )?(python -m tcts_jax\.\S+|bash launch/\S+)(.*)$')
NOT_RUN = {
  'bash launch/train_shapes.sh': 'the commands it runs are the README lines below it, each run here',
  'bash launch/train_scenes.sh': 'the same commands on configs/scenes.py (its stages: tests/test_scenes.py)',
  'bash launch/train.sh': 'what train_shapes.sh and train_scenes.sh run',
}
PROMPT = 'a large red circle in the middle'
AMUSED = 'configs/amused.py'
# The config stage a command reads when it names no --config (its flag's default).
DEFAULT_STAGE = {
  'tcts_jax.tokenizer_eval': 'tokenizer',
  'tcts_jax.selector_eval': 'selector',
  'tcts_jax.evaluate': 'eval',
}


def doc_commands() -> list:
  """(file, command) of every command line in the docs: continuation lines joined, comments and the
  synopses' [--optional flags] dropped, whitespace normalised."""
  found = []
  for name in DOCS:
    lines = (REPO / name).read_text().splitlines()
    i = 0
    while i < len(lines):
      match = COMMAND.match(lines[i].strip())
      i += 1
      if not match:
        continue
      text = match.group(1) + match.group(2)
      while text.rstrip().endswith('\\') and i < len(lines):
        text = text.rstrip()[:-1] + ' ' + lines[i].strip()
        i += 1
      text = re.sub(r'\s+#.*$', '', text)
      text = re.sub(r'\s*\[[^\]]*\]', '', text)
      found.append((name, ' '.join(text.split())))
  return found


BENCHMARK_COMMAND = re.compile(r'(?:python|bench \S+) benchmarks/(\w+)\.py([^`\n]*)')


def benchmark_commands() -> list:
  """(file, script, flags) of every `python benchmarks/...` command in the markdown docs, the benchmarks' own
  docstrings and the results' run scripts (continuation lines joined; the synopses' [--optional] flags included)."""
  docs = [
    *REPO.glob('*.md'),
    *REPO.glob('*/README.md'),
    *REPO.glob('results/*/README.md'),
    *REPO.glob('benchmarks/*.py'),
    *REPO.glob('results/*/run.sh'),
  ]
  return [
    (doc.relative_to(REPO), script, re.findall(r'(?<![\w-])--(\w+)', rest))
    for doc in docs
    for script, rest in BENCHMARK_COMMAND.findall(re.sub(r'\\\n\s*', ' ', doc.read_text()))
  ]


def test_benchmark_commands_name_real_scripts_and_flags():
  """The benchmarks time things and are not run here; their commands in the docs must still name a script in
  benchmarks/ and only flags it defines."""
  commands = benchmark_commands()
  assert len({script for _, script, _ in commands}) >= 8
  for doc, script, flags in commands:
    path = REPO / 'benchmarks' / f'{script}.py'
    assert path.exists(), f'{doc} names benchmarks/{script}.py, which does not exist'
    source = path.read_text()
    for flag in flags:
      assert f"'--{flag}'" in source, f'{doc}: benchmarks/{script}.py has no --{flag}'


REPO_PATH = re.compile(
  r'(?<![\w./-])((?:tcts_jax|configs|benchmarks|results|docs|launch|tests|colabs|weights)/[\w./-]*\w)'
)
NOT_YET = {'weights/shapes_copy': "written by the copy recipe's training run (the docs say so)"}


def test_the_docs_name_only_files_that_exist():
  """Every repository path the prose docs name exists (or starts the name of one: `results/sampler_scaling` for
  its .json and .png)."""
  docs = [*REPO.glob('*.md'), *REPO.glob('docs/*.md'), *REPO.glob('*/README.md'), *REPO.glob('results/*/README.md')]
  for doc in docs:
    for path in set(REPO_PATH.findall(doc.read_text())) - set(NOT_YET):
      found = (REPO / path).exists() or any((REPO / path).parent.glob((REPO / path).name + '*'))
      assert found, f'{doc.relative_to(REPO)} names {path}, which does not exist'


def test_the_docs_show_every_command():
  commands = {c for _, c in doc_commands()}
  for module in ('sample', 'refine', 'edit', 'train', 'export', 'evaluate', 'tokenizer_eval', 'selector_eval'):
    assert any(c.startswith(f'python -m tcts_jax.{module} ') for c in commands), module


@pytest.fixture(scope='module')
def inputs(tmp_path_factory, tiny_data_dir):
  """Small stand-ins for the docs' placeholders."""
  root = tmp_path_factory.mktemp('docs')
  (root / 'out').mkdir()
  (root / 'cwd').mkdir()
  image = root / 'in.png'
  PIL.Image.fromarray(shapes.make_example(0, 3)['image']).save(image)
  folder = root / 'folder'
  (folder / 'img').mkdir(parents=True)
  lines = []
  for i in range(24):
    e = shapes.make_example(5, i)
    PIL.Image.fromarray(e['image']).save(folder / 'img' / f'{i}.png')
    split = 'test' if i < 8 else 'train'
    lines.append(json.dumps({'file_name': f'img/{i}.png', 'caption': e['caption'], 'split': split}))
  (folder / 'captions.jsonl').write_text('\n'.join(lines) + '\n')
  write_coco(root / 'coco', '2017')
  write_cub(root / 'cub')
  return {'root': root, 'out': root / 'out', 'image': image, 'folder': folder, 'tfds': tiny_data_dir}


def chain(command: str) -> str:
  """Which commands must run one after the other: those of the folder, those training or reading workdirs of
  captioned shapes (an eval's --workdir is its output only), and the rest, on the shipped weights."""
  if 'FOLDER' in command or 'workdirs/amused' in command:
    return 'folder'
  inputs = [w for w in command.split() if not w.startswith('--workdir=') or 'tcts_jax.train' in command]
  return 'shapes' if any('workdirs/shapes' in w or 'shapes_tfds' in w for w in inputs) else 'shipped'


def runnable(command: str, inputs: dict) -> list:
  """The arguments that run `command` under the rules of the module docstring."""
  out = inputs['out']
  words = shlex.split(command.replace('="..."', f'="{PROMPT}"'))
  module, args = words[2], []
  for arg in words[3:]:
    flag, eq, value = arg.partition('=')
    if value.startswith(('workdirs/', '/tmp/')):
      value = f'{out}/{value.lstrip("/")}'
    elif flag == '--out':
      value = f'{out}/{value.replace("/", "_")}'
    elif value in ('in.png', 'IN.png'):
      value = str(inputs['image'])
    value = value.replace('FOLDER', str(inputs['folder'])).replace('CLIP_DIR', str(REPO / 'tests/fixtures/tiny_clip'))
    value = value.replace('COCO_ROOT', str(inputs['root'] / 'coco')).replace('CUB_ROOT', str(inputs['root'] / 'cub'))
    if value.startswith(f'{AMUSED}:'):  # the tiny random aMUSEd instead of a downloaded one
      value = re.sub(r':(256|512)', ':tiny', value)
    elif flag == '--image_size' and value in ('256', '512'):
      value = '32'
    elif flag == '--config.weights' and value.startswith('~/amused'):
      continue
    args.append(flag + eq + value)
  if module in ('tcts_jax.data.shapes_tfds', 'tcts_jax.data.scenes_tfds'):
    return [module, '--config=tiny', f'--data_dir={inputs["tfds"]}']
  if module in ('tcts_jax.data.image_folder', 'tcts_jax.data.coco', 'tcts_jax.data.cub'):
    return [module, *args, f'--data_dir={out}/{module.split(".")[-1]}_tfds']
  if any(a.startswith(f'--config={AMUSED}') for a in args):
    if module == 'tcts_jax.train':
      args += [
        f'--config.data.data_dir={out}/folder_tfds',
        '--config.train.num_steps=2',
        '--config.train.image_every=0',
      ]
    return [module, *args]
  if chain(command) != 'shipped':  # trains and uses workdirs of its own: the tiny variant
    if not any(a.startswith('--config=') for a in args):
      args.append(f'--config=configs/shapes.py:{DEFAULT_STAGE[module]}')
    args = [a + (',tiny' if ':' in a else ':sample,tiny') if a.startswith('--config=') else a for a in args]
  if any(a.startswith('--config=configs/image_folder.py') for a in args):
    args.append(f'--config.data.data_dir={out}/folder_tfds')
  elif module not in ('tcts_jax.sample', 'tcts_jax.refine', 'tcts_jax.edit'):  # these read no data
    args += ['--config.data.config_name=tiny', f'--config.data.data_dir={inputs["tfds"]}']
  if module == 'tcts_jax.train':
    args += ['--config.train.num_steps=2', '--config.train.log_every=1', '--config.train.image_every=0']
  if module == 'tcts_jax.evaluate':  # 8 images: too few for FID-shapes' 64 dimensions (tests/test_evaluate.py has it)
    args += [
      '--config.eval.num_images=8',
      '--config.eval.batch_size=8',
      '--config.eval.shard_size=8',
      '--config.eval.bootstrap=10',
      '--config.eval.features_weights=',
      "--config.eval.grid=('uniform@4',)",
      "--config.eval.refinement.methods=('revision:random',)",
      '--config.eval.refinement.rounds=1',
    ]
    if not any(a.startswith('--config=') and 'tiny' in a for a in args):  # the tiny config refines nothing
      args.append('--config.eval.refinement.base=uniform@4')
  return [module, *args]


@pytest.fixture(scope='module')
def doc_runs(inputs):
  """Every distinct documented command, run: [(seconds, file, command, args, CompletedProcess)]."""
  chains, seen = {}, set()
  for name, command in doc_commands():
    key = re.sub(r' --out=\S+', '', command)
    if key not in seen and not command.startswith(tuple(NOT_RUN)):
      seen.add(key)
      chains.setdefault(chain(command), []).append((name, command))
  assert len(seen) >= 25 and set(chains) == {'shipped', 'shapes', 'folder'}, (len(seen), chains.keys())
  todo = [(c, name, command, runnable(command, inputs)) for c, commands in chains.items() for name, command in commands]
  runs = [(args[0], args[1:], inputs['root'] / 'cwd', c) for c, _, _, args in todo]
  done = run_cli_batch(runs, jobs=2, timeout=3000)
  return [(r.seconds, name, command, args, r) for (_, name, command, args), r in zip(todo, done, strict=True)]


def test_every_documented_command_runs(doc_runs):
  for seconds, _, _, args, _ in doc_runs:
    print(f'{seconds:5.1f} s  {" ".join(args)[:160]}')
  failures = [
    f'{name}: {command}\n  ran: {" ".join(args)}\n  {r.stderr.strip().splitlines()[-1:]}'
    for _, name, command, args, r in doc_runs
    if r.returncode != 0
  ]
  assert not failures, '\n'.join(failures)


def test_the_folder_commands_train_sample_and_evaluate_a_users_images(doc_runs, inputs):
  """A dataset is one module + one config: the documented commands train, export, sample and evaluate a
  folder of the user's images as they do captioned shapes."""
  out, folder = inputs['out'], inputs['folder']
  assert all(r.returncode == 0 for _, _, command, _, r in doc_runs if 'FOLDER' in command)
  vocabulary = json.loads((out / 'workdirs/folder/weights/vocab.json').read_text())
  assert 'triangle' in vocabulary and 'zebra' not in vocabulary
  assert (out / 'grid.png').exists() and PIL.Image.open(out / 'grid.png').size[0] > 100
  results = json.loads((out / 'workdirs/folder/eval/results.json').read_text())
  assert results['benchmark'] == f'image_folder/{folder.name}'
  # The tiny eval config refines nothing; a folder has no re-rendered reference row.
  assert [row['name'] for row in results['rows']] == ['uniform@4', 'VQ reconstruction']
  assert all(row['metrics']['clip_score']['value'] is not None for row in results['rows'])
  assert 'inception_fid' in results['unavailable'] and 'no "real" reference row' in ' '.join(results['notes'])


def test_the_amused_recipe_trains_a_selector_and_samples_tcts_fas_with_it(doc_runs, inputs):
  """configs/amused.py's recipe on the tiny random checkpoint: a TCTS selector trained on the frozen aMUSEd
  from a folder of images, then tcts_fas sampling with it."""
  runs = [(command, r) for _, _, command, _, r in doc_runs if AMUSED in command]
  assert len(runs) >= 4 and all(r.returncode == 0 for _, r in runs)
  assert (inputs['out'] / 'workdirs/amused/selector/checkpoints').is_dir()
  assert 'auroc=' in next(r.stdout for c, r in runs if c.startswith('python -m tcts_jax.train'))
  assert 'tcts_fas, 12 steps' in next(r.stdout for c, r in runs if 'tcts_fas' in c)
  assert (inputs['out'] / 'amused_tiny_trajectory_0.png').is_file()  # the --trajectory strip of the tiny sample

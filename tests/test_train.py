"""The trainer: losses go down and checkpoints resume (meshes, processes and bf16: tests/test_scale.py)."""

import jax
import numpy as np
import pytest

from tcts_jax.data import get_dataset, pipeline
from tcts_jax.models import abstract_params, build_models, image_tokens
from tcts_jax.training.trainer import encode_training_set, train_and_evaluate
from tcts_jax.utils import checkpoint
from tcts_jax.utils.config import load_config


def tiny(stage, data_dir, variant='', **train):
  config = load_config(f'configs/shapes.py:{stage},tiny{variant}')
  with config.unlocked():
    config.data.data_dir = str(data_dir)
    config.train.update(train)
  return config


def test_tokenizer_loss_goes_down_and_resumes(tiny_data_dir, tmp_path):
  config = tiny('tokenizer', tiny_data_dir, num_steps=10, log_every=5, image_every=0, checkpoint_every=5)
  state, history = train_and_evaluate(config, tmp_path)
  assert int(state.step) == 10
  first, last = history[0][1], history[-1][1]
  assert last['loss'] < first['loss']
  assert 0 < last['batch_code_usage'] <= 1

  # A longer run in the same workdir resumes from step 10 instead of starting over.
  with config.unlocked():
    config.train.num_steps = 15
  state, history = train_and_evaluate(config, tmp_path)
  assert int(state.step) == 15 and [s for s, _ in history] == [15]


@pytest.mark.parametrize('variant, steps', [('', 30), (',copy', 20)])
def test_generator_loss_goes_down(tiny_data_dir, tiny_weights, tmp_path, capsys, variant, steps):
  config = tiny('generator', tiny_data_dir, variant, num_steps=steps, log_every=10, image_every=0, learning_rate=3e-3)
  with config.unlocked():
    config.tokenizer_checkpoint = str(tiny_weights)  # an exported weights dir serves as well as a workdir
  state, history = train_and_evaluate(config, tmp_path / 'gen')
  assert history[-1][1]['loss'] < history[0][1]['loss']
  assert np.isfinite(history[-1][1]['masked_accuracy'])
  assert 'encoded' in capsys.readouterr().out

  # Rerun when finished: restores the last step without encoding the training set again.
  again, history = train_and_evaluate(config, tmp_path / 'gen')
  assert int(again.step) == steps and history == []
  assert 'encoded' not in capsys.readouterr().out
  for restored, trained in zip(jax.tree.leaves(again.params), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(trained))


@pytest.mark.parametrize('variant', ['', ',copy'])
def test_generator_loss_is_the_weighted_smoothed_cross_entropy(tiny_model, variant):
  # The shipped recipe (default): label smoothing 0.1 at every position, weights 1 (masked) and 0.2 (visible),
  # so its loss is unchanged by the separate visible smoothing. `copy`: the visible positions' loss is the
  # plain cross-entropy (visible_label_smoothing 0), their weight kept.
  import jax.numpy as jnp
  import optax
  from tcts_jax.training.corruption import corrupt
  from tcts_jax.training.stages import GeneratorStage

  _, models, params = tiny_model
  config = load_config(f'configs/shapes.py:generator,tiny{variant}')
  k = models.generator.codebook_size
  ids = jnp.asarray(models.text_tokenizer.encode_batch(['a large red circle', 'a small blue square at the top'] * 4))
  codes = jax.random.randint(jax.random.key(0), (8, models.num_tokens), 0, k)
  rng = jax.random.key(1)
  loss, _ = jax.jit(GeneratorStage(config, models).loss)(params, {}, {'codes': codes, 'text_ids': ids}, rng)

  @jax.jit
  def formula():
    """The same corruption, caption dropout and forward, then the loss by its formula."""
    r_corrupt, r_drop = jax.random.split(rng)
    inputs, masked, _ = corrupt(
      r_corrupt, codes, mask_id=models.mask_id, codebook_size=k, corrupt_prob=config.generator.corrupt_prob
    )
    text, text_mask = models.text_encoder.apply({'params': params['text']}, ids)
    drop = jax.random.uniform(r_drop, (8,)) < config.generator.caption_dropout
    logits = models.generator.apply({'params': params['generator']}, inputs, text, text_mask, drop)
    smoothed = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(codes, k), 0.1))
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, codes)
    weights = jnp.where(masked, 1.0, 0.2)
    mean = lambda visible_ce: jnp.sum(jnp.where(masked, smoothed, visible_ce) * weights) / jnp.sum(weights)
    return mean(plain if variant else smoothed), mean(smoothed if variant else plain), jnp.mean(masked)

  expected, other, masked_fraction = formula()
  assert 0 < float(masked_fraction) < 1
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)
  assert abs(float(other - expected)) > 1e-3  # the other visible smoothing would give another loss


def _flatten(tree, prefix=''):
  """A config's values by dotted key (references resolved)."""
  if hasattr(tree, 'copy_and_resolve_references'):
    tree = tree.copy_and_resolve_references().to_dict()
  out = {}
  for key, value in tree.items():
    out.update(_flatten(value, f'{prefix}{key}.') if isinstance(value, dict) else {f'{prefix}{key}': value})
  return out


def test_copy_variant_builds_for_every_stage():
  # `copy` changes the generator's visible-token recipe, the selector's examples and the weights dir, nothing else.
  expected = {
    'generator.corrupt_prob': 1e-3,
    'generator.visible_label_smoothing': 0.0,
    'selector.ratio': 'uniform',
    'selector.visible_tokens': 'keep',
    'weights': 'weights/shapes_copy',
  }
  for stage in ('tokenizer', 'generator', 'selector', 'sample', 'features', 'eval', 'eval,smoke'):
    for tiny_variant in ('', ',tiny'):
      base = _flatten(load_config(f'configs/shapes.py:{stage}{tiny_variant}'))
      copy = _flatten(load_config(f'configs/shapes.py:{stage}{tiny_variant},copy'))
      assert set(copy) == set(base)
      assert {key: v for key, v in copy.items() if v != base[key]} == expected, (stage, tiny_variant)


def test_training_set_codes_equal_encoding_each_batch(tiny_data_dir, tiny_weights):
  # The generator and selector stages read the codes encoded once; they must be the step's own encoding.
  tok = tiny('tokenizer', tiny_data_dir)
  dataset = get_dataset(tok.data)
  models = build_models(tok, dataset.vocabulary())
  params = checkpoint.load_part(tiny_weights, 'tokenizer', abstract_params(models, 32)['tokenizer'])
  codes = encode_training_set(
    dataset, lambda images: image_tokens(models, params, images), models.num_tokens, batch_size=24
  )
  assert codes.shape == (dataset.num_records('train'), models.num_tokens)
  batch = next(pipeline.make_loader(dataset, 'train', 16, seed=3))
  np.testing.assert_array_equal(codes[batch['index']], image_tokens(models, params, batch['image']))
  assert len(np.unique(codes)) > 1


def test_edge_weights_pick_out_object_outlines():
  import jax.numpy as jnp
  from tcts_jax.training.stages import edge_weights

  flat = jnp.full((2, 8, 8, 3), 0.3)
  np.testing.assert_allclose(edge_weights(flat, 10.0), 1.0)  # no edges: the plain mean
  img = flat.at[0, 2:5, 2:5].set(-0.9)  # one 3x3 object on image 0
  w = np.asarray(edge_weights(img, 10.0))[..., 0]
  assert w.shape == (2, 8, 8) and abs(w.mean() - 1.0) < 1e-6
  outline = np.zeros((8, 8), bool)
  outline[1:6, 1:6] = True
  outline[3, 3] = False  # the object's centre has no different neighbour
  for corner in [(1, 1), (1, 5), (5, 1), (5, 5)]:
    outline[corner] = False  # diagonal neighbours do not count
  assert np.all(w[0][outline] > 5 * w[0][~outline].max())
  np.testing.assert_allclose(w[0][~outline], w[1, 0, 0], rtol=1e-6)  # everything else: the base weight
  np.testing.assert_allclose(w[1], w[1, 0, 0], rtol=1e-6)


def test_smoothed_cross_entropy_equals_optax_on_smoothed_one_hot():
  import optax
  from tcts_jax.training.stages import smoothed_cross_entropy

  logits = 3.0 * jax.random.normal(jax.random.key(0), (2, 5, 37))
  labels = jax.random.randint(jax.random.key(1), (2, 5), 0, 37)
  for s in (0.0, 0.1, 0.5):
    reference = lambda x: optax.softmax_cross_entropy(x, optax.smooth_labels(jax.nn.one_hot(labels, 37), s))
    ours = lambda x: smoothed_cross_entropy(x, labels, s)
    np.testing.assert_allclose(ours(logits), reference(logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
      jax.grad(lambda x: ours(x).sum())(logits), jax.grad(lambda x: reference(x).sum())(logits), rtol=1e-5, atol=1e-6
    )

"""What the sampler needs of a model: sizes and pure functions (docs/design.md §8).

The sampler never imports a model. A masked generative model is handed to it as a `MaskedGenerator`
(and, for TCTS, a `TokenSelector`): plain functions of `(params, ...)`, like the `tokens_to_logits`
callback of MaskGIT's parallel decoding, so any model that can give logits for a canvas of tokens can
be sampled: ours (`tcts_jax.models.Models.masked_generator`) or another one behind the same functions.

Conventions shared by both:
- Classifier-free guidance runs as one batch of 2B rows: B conditional rows, then B unconditional ones.
  `encode_text(params, text_ids, negative_ids)` returns a *text state* for those 2B rows (the
  unconditional rows hold the model's null text, or the negative prompt when `negative_ids` is given).
  It is a pytree whose leaves all have the 2B rows first (so the sampler can take the conditional half),
  and it holds everything that does not change over the steps (the text encoding, the cross-attention
  keys and values of every layer): the sampler computes it once, before its loop.
- `text_ids` is whatever the model's text side reads (word ids, CLIP ids, ...): (B, ...) arrays.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

TextState = Any  # a pytree with 2B leading rows


@dataclasses.dataclass(frozen=True)
class MaskedGenerator:
  """A masked generative model over a canvas of `num_tokens` tokens with ids in [0, codebook_size).

  encode_text(params, text_ids (B, ...), negative_ids (B, ...) or None) -> TextState of 2B rows.
  logits(params, tokens (R, N) int32, text_state of R rows, attention_layer: int | tuple[int, ...] | None)
      -> (logits (R, N, codebook_size), maps): R is 2B (guidance) or B (the conditional half, e.g. for
      editing); token id `mask_id` marks masked positions. `maps` is None when `attention_layer` is None,
      else {'self_attention': (R, heads, N, N), 'cross_attention': (R, heads, N, L)}: the softmax
      probabilities of that layer, from the same forward pass; optionally also 'cross_attention_logits'
      (R, heads, N, L), the cross-attention scores before the softmax (-inf where the text is masked), which
      fas_map='cross_attention' needs. A tuple of layers gives a tuple of such dicts (same pass), which
      fas_map='cross_attention' asks for.
  decode(params, tokens (B, N)) -> images (B, H, W, 3) float in [0, 1]; None: tokens only.
  num_layers: how many attention layers `attention_layer` may name (FAS reads one of them).
  aux_logits(params, tokens (B, N), text_state of B rows (the conditional half)) -> (B, N, codebook_size): the
      self-guidance auxiliary model's "semantically smoothed" logits (docs/design.md §15); None: no such model.
  features(params, tokens, text_state, attention_layer) -> (features (R, N, D), maps) and head(params, features)
      -> logits (R, N, codebook_size): optionally, `logits` split before an AFFINE last layer (logits =
      head(features)). Then guidance is exact on the features, head(f_c + g (f_c - f_u)) = c + g (c - u), and the
      sampler runs the head (the costliest layer at large codebooks) on B rows instead of 2B (docs/design.md
      §2.3). None: the sampler guides the logits.
  """

  num_tokens: int
  codebook_size: int
  mask_id: int
  num_layers: int
  encode_text: Callable[..., TextState]
  logits: Callable[..., tuple]
  decode: Optional[Callable[..., jax.Array]] = None
  aux_logits: Optional[Callable[..., jax.Array]] = None
  features: Optional[Callable[..., tuple]] = None
  head: Optional[Callable[..., jax.Array]] = None


@dataclasses.dataclass(frozen=True)
class TokenSelector:
  """A TCTS selector: scores every token of a full canvas for "does not fit the text and the image".

  encode_text(params, text_ids, negative_ids or None) -> TextState of 2B rows (as above).
  logits(params, tokens (R, N) int32, ratio (R,) float, text_state of R rows) -> (R, N) logits, high =
      NOT real / text-aligned. `ratio` is the masked fraction of the generator input that produced the
      tokens. R is 2B (selector guidance) or B (the conditional rows alone).
  """

  encode_text: Callable[..., TextState]
  logits: Callable[..., jax.Array]


def map_row_chunks(fn: Callable, rows: int, row_inputs):
  """`fn(row_inputs)` for a pytree `row_inputs` whose leaves share their leading (row) axis, and whose result's
  leaves have those rows first, computed `rows` rows at a time in one `lax.map` (all at once when rows is 0 or
  covers them). Rows are independent in every forward here, so this is the same math on a working set of
  `rows` rows; a last, short chunk is padded with copies of the last row and the padding dropped."""
  total = jax.tree.leaves(row_inputs)[0].shape[0]
  if not rows or total <= rows:
    return fn(row_inputs)
  chunks = -(-total // rows)
  pad = chunks * rows - total

  def split(leaf):
    leaf = jnp.concatenate([leaf, jnp.repeat(leaf[-1:], pad, axis=0)]) if pad else leaf
    return leaf.reshape((chunks, rows) + leaf.shape[1:])

  out = jax.lax.map(fn, jax.tree.map(split, row_inputs))
  return jax.tree.map(lambda leaf: leaf.reshape((chunks * rows,) + leaf.shape[2:])[:total], out)


def with_row_chunks(model: MaskedGenerator, selector: Optional[TokenSelector], rows: int) -> tuple:
  """`model` and `selector` whose per-step forwards (generator logits / features, selector logits) run `rows` rows
  at a time (`map_row_chunks`); unchanged when rows is 0. On a CPU this keeps a large batch's attention inside
  the caches (docs/design.md §2.3)."""
  if not rows:
    return model, selector

  def rows_of(forward):
    if forward is None:
      return None
    return lambda params, tokens, state, layer: map_row_chunks(
      lambda xs: forward(params, xs[0], xs[1], layer), rows, (tokens, state)
    )

  model = dataclasses.replace(model, logits=rows_of(model.logits), features=rows_of(model.features))
  if selector is not None:
    logits = selector.logits
    selector = dataclasses.replace(
      selector,
      logits=lambda params, tokens, ratio, state: map_row_chunks(
        lambda xs: logits(params, *xs), rows, (tokens, ratio, state)
      ),
    )
  return model, selector


def conditional_rows(text_state: TextState, b: int) -> TextState:
  """The first `b` rows (the conditional half) of a text state."""
  return jax.tree.map(lambda leaf: leaf[:b], text_state)


def guided_selector_logits(selector: TokenSelector, params, tokens, ratio, text_state, guidance: float):
  """Selector guidance `s_u + g (s_c - s_u)` for tokens (B, N), from ONE batched pass over both halves of
  the text state. `guidance` is static: with g == 1 the result is the conditional score, so only that half
  runs."""
  b = tokens.shape[0]
  ratio = jnp.broadcast_to(jnp.asarray(ratio, jnp.float32), (b,))
  if guidance == 1.0:
    return selector.logits(params, tokens, ratio, conditional_rows(text_state, b))
  s = selector.logits(params, jnp.concatenate([tokens, tokens]), jnp.concatenate([ratio, ratio]), text_state)
  cond, uncond = s[:b], s[b:]
  return uncond + guidance * (cond - uncond)

"""Every random choice is ``fold_in(seed, round, purpose)``.

Keys never depend on wall time, iteration order or how many keys were drawn
before, so a resumed or resharded run makes exactly the same choices.
Choices made once per tile for the whole run (is this label held out for the
IoU head? is this source chip a validation chip?) use round 0 and fold in the
tile id, so a tile's draw depends on nothing but the seed and its id.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Append only: a purpose's index is part of every key drawn for it.
PURPOSES = ('init', 'pretrain', 'pretrain_head', 'select', 'finetune', 'head', 'mc_dropout',
            'calibration', 'source_val')


def round_key(seed: int, round_index: int, purpose: str) -> jax.Array:
  if purpose not in PURPOSES:
    raise ValueError(f'unknown rng purpose {purpose!r}; expected one of {PURPOSES}')
  key = jax.random.fold_in(jax.random.key(seed), round_index)
  return jax.random.fold_in(key, PURPOSES.index(purpose))


def _fold_ids(draw):
  """``draw(key, high, low)`` for each id, vmapped and jitted."""
  return jax.jit(jax.vmap(lambda key, h, l: draw(jax.random.fold_in(jax.random.fold_in(key, h), l)),
                          in_axes=(None, 0, 0)))


_UNIFORMS = _fold_ids(jax.random.uniform)
_BITS = _fold_ids(lambda key: jax.random.bits(key, dtype=jnp.uint32))


def _per_id(fn, key: jax.Array, ids) -> np.ndarray:
  """``fn`` over int64 ids (both 32-bit halves folded in), padded to a power
  of two so that few shapes compile."""
  ids = np.asarray(ids, np.int64).reshape(-1)
  n = len(ids)
  padded = np.zeros(1 << max(0, (n - 1).bit_length()), np.int64)
  padded[:n] = ids
  high = (padded >> 32).astype(np.uint32)
  low = (padded & 0xFFFFFFFF).astype(np.uint32)
  return np.asarray(fn(key, high, low))[:n]


def id_keys(ids) -> np.ndarray:
  """The uint32 that a tile's per-pick random draws fold in (BADGE's and
  k-means++'s Gumbel noise, ``random``, power acquisition): its id's low 32
  bits. JAX runs without x64; ids that differ by a multiple of 2^32 share
  these draws, and ties still go by the whole id."""
  return (np.asarray(ids).reshape(-1).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)


def keyed_bits(key: jax.Array, ids) -> np.ndarray:
  """A uint32 hash of each tile id under ``key``: the same for a tile
  wherever it stands in the pool, different under another key."""
  return _per_id(_BITS, key, ids)


def tile_uniforms(seed: int, purpose: str, ids) -> np.ndarray:
  """One U(0, 1) draw per tile id (int64 ids: both 32-bit halves are folded
  in) from ``round_key(seed, 0, purpose)``."""
  return _per_id(_UNIFORMS, round_key(seed, 0, purpose), ids)

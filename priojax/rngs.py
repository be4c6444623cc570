"""Every random choice is ``fold_in(seed, round, purpose)``.

Keys never depend on wall time, iteration order or how many keys were drawn
before, so a resumed or resharded run makes exactly the same choices.
Choices made once per tile for the whole run (is this label held out for the
IoU head? is this source chip a validation chip?) use round 0 and fold in the
tile id, so a tile's draw depends on nothing but the seed and its id.
"""

from __future__ import annotations

import jax
import numpy as np

# Append only: a purpose's index is part of every key drawn for it.
PURPOSES = ('init', 'pretrain', 'pretrain_head', 'select', 'finetune', 'head', 'mc_dropout',
            'calibration', 'source_val')


def round_key(seed: int, round_index: int, purpose: str) -> jax.Array:
  if purpose not in PURPOSES:
    raise ValueError(f'unknown rng purpose {purpose!r}; expected one of {PURPOSES}')
  key = jax.random.fold_in(jax.random.key(seed), round_index)
  return jax.random.fold_in(key, PURPOSES.index(purpose))


@jax.jit
def _uniforms(key: jax.Array, high: jax.Array, low: jax.Array) -> jax.Array:
  return jax.vmap(lambda h, l: jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, h), l)))(
      high, low)


def tile_uniforms(seed: int, purpose: str, ids) -> np.ndarray:
  """One U(0, 1) draw per tile id (int64 ids: both 32-bit halves are folded
  in) from ``round_key(seed, 0, purpose)``."""
  ids = np.asarray(ids, np.int64).reshape(-1)
  n = len(ids)
  if n == 0:
    return np.zeros(0, np.float32)
  padded = np.zeros(1 << (n - 1).bit_length(), np.int64)  # few distinct shapes: few compiles
  padded[:n] = ids
  high = (padded >> 32).astype(np.uint32)
  low = (padded & 0xFFFFFFFF).astype(np.uint32)
  return np.asarray(_uniforms(round_key(seed, 0, purpose), high, low))[:n]

"""Every random choice is ``fold_in(seed, round, purpose)``.

Keys never depend on wall time, iteration order or how many keys were drawn
before, so a resumed or resharded run makes exactly the same choices.
"""

import jax

PURPOSES = ('init', 'pretrain', 'pretrain_head', 'select', 'finetune', 'head', 'mc_dropout')


def round_key(seed: int, round_index: int, purpose: str) -> jax.Array:
  if purpose not in PURPOSES:
    raise ValueError(f'unknown rng purpose {purpose!r}; expected one of {PURPOSES}')
  key = jax.random.fold_in(jax.random.key(seed), round_index)
  return jax.random.fold_in(key, PURPOSES.index(purpose))

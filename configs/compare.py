"""Every acquisition strategy x 3 seeds on the embedded crisis benchmark.

    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare
    python -m experiments.compare --config=configs/compare.py:smoke --workdir=/tmp/compare

All strategies share each seed's pretrained source model and the same budget
schedule (rounds.k labels per round). The U-Net has dropout (0.1) for every
strategy so that the MC-dropout ones (bald, mc_variance) use the same model.
Sized to finish in about an hour on 2 CPU cores; ``smoke`` in about a minute.
"""

import ml_collections

from configs import common
from priojax import priority



def get_config(arg=None):
  smoke = arg == 'smoke'
  if arg not in (None, 'smoke'):
    raise ValueError(f'unknown config argument {arg!r}; expected nothing or "smoke"')
  base = common.get_config('smoke' if smoke else None)
  base.model.dropout = 0.1
  if not smoke:
    base.rounds.update(num_rounds=5, k=20)
    base.finetune.update(steps=120)
    base.head.update(steps=300)
    base.priority.update(mc_passes=6)
  c = ml_collections.ConfigDict()
  c.base = base
  c.strategies = list(priority.BUILTIN)  # every strategy priojax ships
  c.seeds = [0] if smoke else [0, 1, 2]
  c.reference = True  # also fine-tune on the whole labelled pool
  return c

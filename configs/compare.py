"""Strategies x 5 seeds, paired against random, on one benchmark.

    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare
    python -m experiments.compare --config=configs/compare.py:low --workdir=runs/compare_low
    python -m experiments.compare --config=configs/compare.py:real --workdir=runs/compare_real
    python -m experiments.compare --config=configs/compare.py:confirm --workdir=runs/confirm
    python -m experiments.compare --config=configs/compare.py:headroom --workdir=runs/confirm
    python -m experiments.compare --config=configs/compare.py:geotiff --workdir=runs/compare_palu \
        --config.base.data.manifest=my_crisis.yaml
    python -m experiments.compare --config=configs/compare.py:smoke --workdir=/tmp/compare
    python -m experiments.compare --config=configs/compare.py --workdir=runs/two \
        --config.strategies='(random,iou_gain)' --config.seeds='(0,1)'

Arguments (comma-separated): ``real`` (the Rio Grande do Sul imagery with
its recipe, 100 U-Net steps a round, a source model per seed, eight
strategies), ``geotiff`` (the same on your own labelled scenes, with one
source model for every seed: give the manifest with
``--config.base.data.manifest=my_crisis.yaml``; its ``target_pool`` scenes
need labels, which play the annotators), ``low`` (the low-budget schedule:
10 labels a round instead of 20, ten strategies), ``all`` (every built-in
strategy), ``confirm`` (with any of the others: ``typical_error_mass``,
random, the two anchors and ``typical_gain`` on the fresh seeds 10-14),
``headroom`` (the same, and the two oracle ceilings, priority/oracle_ceiling.py:
the IoU formulas with a perfect IoU head; in the ``confirm`` workdir only
the ceilings run),
``smoke`` (seconds). ``--results_section=synthetic|synthetic_low|real``
(and ``<those>_confirm``, ``<those>_headroom``) regenerates the block of docs/results.md and the
README's short table (experiments/compare.py).

All strategies of a seed share its pretrained source model and the same
budget schedule. The U-Net has dropout (0.1) for every strategy so that
the MC-dropout ones (bald, mc_variance) use the same model. Measured on 2
CPU cores: the default set's 13 strategies before the budget-aware two
were added took 19-20 minutes a seed (about 95 minutes in all); BUILD.md
has the others.
"""

import ml_collections

from priojax import config_defaults
from priojax import priority

# The default set: random and its honest variants (foreground-aware,
# stratified), the low-budget anchors (TypiClust, MaxHerding), core-set and
# BADGE (the strongest classic baselines before issue 13), our reading of the
# paper's two formulas (iou, iou_diversity), the learnability-aware ones
# (iou_gain, iou_trend), stochastic power acquisition on iou_gain and on
# iou (to tell what the power draw does from what learnability does), and
# the budget-aware ones (typiclust_then_gain, typical_gain).
BUDGET_AWARE = ('typiclust_then_gain', 'typical_gain')
STRATEGIES = ('random', 'fg_random', 'stratified_random', 'typiclust', 'maxherding', 'coreset', 'badge',
              'iou', 'iou_diversity', 'iou_gain', 'iou_trend', 'iou_gain+power', 'iou+power') + BUDGET_AWARE
# The low-budget schedule runs fewer (each strategy costs 5 runs): random and
# its variants, the anchors, iou and the learnability-aware one.
LOW = ('random', 'fg_random', 'stratified_random', 'typiclust', 'maxherding', 'iou', 'iou_gain',
       'iou_gain+power') + BUDGET_AWARE
# Real imagery: a round costs about three synthetic ones.
REAL = ('random', 'fg_random', 'typiclust', 'iou', 'iou_gain', 'iou_gain+power') + BUDGET_AWARE
# The confirmation run (``confirm``): typical_error_mass, written after the
# seeds 5-9 runs, against random, the two low-budget anchors and the main
# job's typical_gain, on seeds no run had used.
CONFIRM = ('random', 'fg_random', 'typiclust', 'typical_gain', 'typical_error_mass')
CONFIRM_SEEDS = (10, 11, 12, 13, 14)
# How far a perfect IoU head would take the IoU formulas (``headroom``): the
# confirmation's strategies and the two oracle ceilings, on its seeds.
HEADROOM = CONFIRM + ('oracle_error', 'oracle_error_mass')


def get_config(arg=None):
  args = set(filter(None, (arg or '').split(',')))
  unknown = args - {'smoke', 'real', 'geotiff', 'low', 'all', 'confirm', 'headroom'}
  if unknown:
    raise ValueError(f'unknown config arguments {sorted(unknown)}; expected "smoke", "real", "geotiff", '
                     '"low", "all", "confirm" or "headroom"')
  smoke = 'smoke' in args
  real = bool(args & {'real', 'geotiff'})  # real imagery: the benchmark's, or the user's scenes
  base = config_defaults.get_config(','.join(a for a in ('smoke', 'real', 'geotiff') if a in args) or None)
  base.model.dropout = 0.1
  if real and not smoke:
    # The real recipe's model and pretraining; rounds cut to 100 U-Net steps
    # (the recipe's 150, for 6 strategies x 5 seeds, would take half as long again).
    base.finetune.update(steps=100)
    base.head.update(steps=300)
  elif not smoke:
    base.rounds.update(num_rounds=5, k=20)
    base.finetune.update(steps=120)
    base.head.update(steps=300)
  if 'low' in args:
    base.rounds.update(k=base.rounds.k // 2)
  base.priority.update(mc_passes=6 if not smoke else 2)
  c = ml_collections.ConfigDict()
  c.base = base
  fresh = bool(args & {'confirm', 'headroom'})
  c.strategies = (priority.BUILTIN if 'all' in args else HEADROOM if 'headroom' in args else
                  CONFIRM if 'confirm' in args else REAL if real and not smoke else
                  LOW if 'low' in args else STRATEGIES)
  c.seeds = (0,) if smoke else CONFIRM_SEEDS if fresh else (0, 1, 2, 3, 4)
  c.reference = True  # also fine-tune on every label of the pool
  # A folder of seed records made elsewhere (another machine, or the ones
  # docs/records/<section>/ ships): runs recorded there with the same config
  # are not run again (priojax/comparison_records.py).
  c.records = ''
  # Rebuild the report from records only: a run not recorded is an error, not hours of work.
  c.only_recorded = False
  # The Rio Grande benchmark pretrains a source model per seed, so that its
  # intervals span source models too; on the user's own scenes one source
  # model (the first seed's) serves every seed, to save four pretrainings.
  c.shared_source = 'geotiff' in args
  return c

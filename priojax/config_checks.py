"""Checks a run config before anything is computed: one line per problem,
naming the field, what was expected and what was given. Also: reading and
writing a config field by its dotted path, and comparing the config of a
resumed workdir with the one it started with."""

from __future__ import annotations

from typing import Any

from priojax import priority, tile_stats
from priojax.errors import ConfigError, WorkdirError
from priojax.models.encoder_unet import ENCODER_NAMES, ENCODER_WEIGHTS, STRIDE
from priojax.models.unet import NORMS, UPSAMPLES
from priojax.uncertainty import AGGREGATIONS

_DTYPES = ('float32', 'bfloat16', 'float16')
# The synthetic benchmark, a manifest of the user's scenes, the real
# DSG imagery of Rio Grande do Sul (priojax/data/rio_grande.py).
DATA_KINDS = ('crisis_bench', 'geotiff', 'rio_grande_dsg')


def get_field(config, dotted: str) -> Any:
  node = config
  for name in dotted.split('.'):
    node = node[name]
  return node


def set_field(config, dotted: str, value: Any) -> None:
  section, _, name = dotted.rpartition('.')
  (get_field(config, section) if section else config)[name] = value


def _need(cond: bool, field: str, expected: str, value) -> None:
  if not cond:
    raise ConfigError(f'config.{field}: expected {expected}, got {value!r}')


def _number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(config, field: str, lo: int = 0) -> None:
  value = get_field(config, field)
  _need(_number(value) and isinstance(value, int) and value >= lo, field, f'an integer >= {lo}', value)


def _fraction(config, field: str) -> None:
  value = get_field(config, field)
  _need(_number(value) and 0.0 <= value < 1.0, field, 'a number in [0, 1)', value)


def _positive(config, field: str) -> None:
  value = get_field(config, field)
  _need(_number(value) and value > 0, field, 'a positive number', value)


def check_budget(config, pool_size: int, where: str) -> None:
  """The label budget fits the target pool (known before loading the data
  for the benchmark, after it for GeoTIFF scenes)."""
  if config.rounds.k == 0:  # the whole pool, in one round
    if config.rounds.num_rounds > 1:
      raise ConfigError(f'config.rounds: k=0 labels the whole pool in round 1; expected num_rounds <= 1, '
                        f'got {config.rounds.num_rounds}')
    return
  budget = config.rounds.k * config.rounds.num_rounds
  if budget > pool_size:
    raise ConfigError(f'config.rounds: k={config.rounds.k} x num_rounds={config.rounds.num_rounds} '
                      f'= {budget} labels exceeds the {pool_size} tiles of the target pool of {where}')


def check_config(config) -> None:
  for field in ('data.tile_size', 'model.depth', 'model.width', 'pretrain.batch_size',
                'finetune.batch_size', 'head.batch_size', 'scoring.batch_size', 'model.embed_dim',
                'model.head_hidden', 'priority.region', 'review.max_side', 'review.max_rows',
                'review.max_scenes', 'review.max_chips', 'review.thumbnail'):
    _int(config, field, lo=1)
  for field in ('pretrain.steps', 'pretrain.head_steps', 'finetune.steps', 'head.steps',
                'rounds.num_rounds', 'rounds.k', 'priority.source_reference', 'seed'):
    _int(config, field, lo=0)
  _int(config, 'data.split_seed', lo=-1)
  for field in ('pretrain.learning_rate', 'finetune.learning_rate', 'head.learning_rate'):
    _positive(config, field)
  for field in ('finetune.source_replay', 'head.holdout_fraction', 'model.dropout', 'priority.top_q'):
    _fraction(config, field)
  _need(config.priority.aggregation in AGGREGATIONS, 'priority.aggregation', f'one of {AGGREGATIONS}',
        config.priority.aggregation)
  formula = priority.get(config.priority.name)
  for name, value in config.priority.get('params', {}).items():
    _need(name not in priority.DEFAULT_HPARAMS, f'priority.params.{name}',
          f'a name other than the built-in hparams {sorted(priority.DEFAULT_HPARAMS)} (set those in '
          f'config.priority.{name})', value)
    _need(isinstance(value, (bool, int, float, str)), f'priority.params.{name}',
          'a number, a bool or a string', value)
  _need(config.priority.acquisition in priority.ACQUISITIONS, 'priority.acquisition',
        f'one of {priority.ACQUISITIONS}', config.priority.acquisition)
  if config.priority.acquisition == 'power':
    _need(formula.is_score, 'priority.acquisition',
          f"'top_k' for {formula.name!r}, which picks its batch itself (power draws apply to score "
          'formulas)', config.priority.acquisition)
    _positive(config, 'priority.power_beta')
  # What scoring will compute: an unknown statistic in reads=... fails here.
  tile_stats.for_formula(formula, {'aggregation': config.priority.aggregation})
  if formula.needs_mc:
    _int(config, 'priority.mc_passes', lo=2)
    _need(config.model.dropout > 0, 'model.dropout',
          f'a dropout rate > 0 for the MC-dropout formula {formula.name!r}', config.model.dropout)
  _need(config.model.norm in NORMS, 'model.norm', f'one of {NORMS}', config.model.norm)
  _need(config.model.upsample in UPSAMPLES, 'model.upsample', f'one of {UPSAMPLES}', config.model.upsample)
  _need(config.model.dtype in _DTYPES, 'model.dtype', f'one of {_DTYPES}', config.model.dtype)
  _need(config.finetune.init in ('previous', 'pretrained'), 'finetune.init',
        "'previous' or 'pretrained'", config.finetune.init)
  _need(config.data.kind in DATA_KINDS, 'data.kind', ' or '.join(map(repr, DATA_KINDS)), config.data.kind)
  if config.data.kind == 'geotiff':
    _need(bool(config.data.manifest), 'data.manifest',
          "the path of a scene manifest (YAML or JSON) when data.kind='geotiff'", config.data.manifest)
  if config.data.kind != 'crisis_bench':
    _fraction(config, 'data.source_val_fraction')
  m = config.model
  _need(m.encoder in ENCODER_NAMES, 'model.encoder', f'one of {ENCODER_NAMES}', m.encoder)
  _need(m.encoder_weights in ENCODER_WEIGHTS, 'model.encoder_weights', f'one of {ENCODER_WEIGHTS}',
        m.encoder_weights)
  _positive(config, 'model.encoder_lr_scale')
  size = config.data.tile_size
  _need(size % config.priority.region == 0, 'priority.region',
        f'a divisor of data.tile_size = {size} (the side of the regions a tile is cut into)',
        config.priority.region)
  expected = tile_size_expected(config, size)
  _need(expected is None, 'data.tile_size', expected, size)
  if config.data.kind == 'crisis_bench':
    check_budget(config, config.data.num_target_pool, 'the benchmark')


def tile_size_expected(config, size: int) -> str | None:
  """What chips of ``size`` px lack for the config's model and formula
  (None if nothing): a manifest's own ``tile_size`` is checked with it too."""
  m = config.model
  if m.encoder == 'none' and size % (2**m.depth):
    return f'a multiple of 2**model.depth = {2**m.depth}'
  if m.encoder != 'none' and size % STRIDE:
    return f'a multiple of {STRIDE} for model.encoder={m.encoder!r}'
  if size % config.priority.region:
    return f'a multiple of priority.region = {config.priority.region}'
  return None


# Fields that may change between starts of one run: extending it, moving the
# dataset cache, the switch itself, and the upsampling's form (both forms
# compute the same map from the same parameters; runs started before the
# field existed used 'conv_transpose').
_MAY_CHANGE = frozenset({'rounds.num_rounds', 'data.data_dir', 'allow_config_change', 'model.upsample'})
# Sections that only shape what a run shows (review.html), never what it computes.
_VIEW_ONLY = ('review.',)
# Fields added since runs began, with the value that means what those runs did.
_ADDED = {'model.encoder': 'none', 'model.encoder_weights': 'imagenet', 'model.encoder_lr_scale': 1.0}


def flatten(tree: dict, prefix: str = '') -> dict:
  """A nested config dict as ``{'section.field': value}``."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def check_same_config(old: dict | None, new: dict, workdir) -> list[str]:
  """A resumed run must use the config it started with (``old``; None on a
  first start), or say it may not; returns the fields that changed, beyond
  those that may always change."""
  if old is None:
    return []
  old, flat = {**_ADDED, **flatten(old)}, flatten(new)
  changed = sorted(k for k in old.keys() | flat.keys() if old.get(k) != flat.get(k) and k not in _MAY_CHANGE
                   and not k.startswith(_VIEW_ONLY))
  if changed and not new.get('allow_config_change', False):
    shown = ', '.join(f'{k}: {old.get(k)!r} -> {flat.get(k)!r}' for k in changed[:6])
    raise WorkdirError(f'workdir {workdir} was started with another config ({shown}'
                       f'{" ..." if len(changed) > 6 else ""}); rerun with the same config, '
                       'or pass --config.allow_config_change=True to continue anyway')
  return changed

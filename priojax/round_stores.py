"""How each step of a round keeps its output in the round's folder
(round_steps.py): the pool's scores, the selection (with its public copy
``selected_round_<r>.json``), the round's labelled set and the metrics
record. The fine-tuned state is an orbax checkpoint (round_steps.py)."""

from __future__ import annotations

import numpy as np

from priojax import ledger, round_steps, selection
from priojax.atomic_io import atomic_write_json
from priojax.labelled_set import LabelledSet
from priojax.scoring import PoolStats
from priojax.workdir import Workdir


_INFO = 'info/'  # Selection.info in selection.npz


def selected_store(workdir: Workdir, round_index: int, formula: str) -> round_steps.Store:
  """The selection, and its public copy ``selected_round_<r>.json`` (written
  first: once 'selected' is marked, both exist)."""
  arrays = round_steps.npz_store(
      'selection.npz',
      lambda s: {'ids': s.ids, 'priorities': s.priorities, 'pred_iou': s.pred_iou,
                 'seconds': np.float64(s.seconds), **({'scores': s.scores} if s.scores is not None else {}),
                 **{_INFO + k: np.float64(v) for k, v in s.info.items()}},
      lambda a: selection.Selection(a['ids'], a['priorities'], a['pred_iou'], a.get('scores'),
                                    float(a['seconds']),
                                    {k[len(_INFO):]: float(a[k]) for k in a if k.startswith(_INFO)}))

  def save(folder, picked):
    atomic_write_json(workdir.selected(round_index),
                      {'round': round_index, 'formula': formula, **picked.to_json()})
    arrays.save(folder, picked)

  return round_steps.Store(save, arrays.load, arrays.file)


SCORES = round_steps.npz_store(
    'scores.npz',
    lambda v: {**{f'stat:{k}': c for k, c in v[0].columns.items()}, 'ids': v[0].ids,
               'reference': v[1], 'seconds': np.asarray(v[2], np.float64)},
    lambda a: (PoolStats(a['ids'], **{k.removeprefix('stat:'): c for k, c in a.items() if k.startswith('stat:')}),
               a['reference'], tuple(float(s) for s in a['seconds'])))


def labels_store(oracle) -> round_steps.Store:
  """A round's ``LabelledSet``: its ledger entries (``labelled.json``) and
  masks (``labelled_masks.npz``, written first). A round folder from before
  the masks were kept reads them from the oracle, checked by their hashes."""
  entries = round_steps.json_store('labelled.json', lambda s: [e.to_json() for e in s.entries],
                                   lambda obj: [ledger.LedgerEntry(**e) for e in obj])
  masks = round_steps.npz_store('labelled_masks.npz', lambda s: {'masks': s.masks}, lambda a: a['masks'])

  def save(folder, labelled: LabelledSet):
    masks.save(folder, labelled)
    entries.save(folder, labelled)

  def load(folder):
    round_entries = entries.load(folder)
    if (folder / masks.file).exists():
      return LabelledSet.of(round_entries, masks.load(folder))
    return LabelledSet.reveal({e.id: e for e in round_entries}, oracle, str(folder))

  return round_steps.Store(save, load, entries.file)

RECORD = round_steps.json_store('record.json')

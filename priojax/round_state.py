"""The persisted state machine of one unfinished round.

A round goes through::

  scored -> selected -> labelled -> fine_tuned -> evaluated -> (committed)

Each step writes its output into ``rounds/round_<r>/`` (atomically: temp
file, fsync, rename; the fine-tuned train state as an orbax checkpoint,
which orbax renames into place) and only *then* records the step in
``progress.json``. On restart, every recorded step is loaded instead of
recomputed, and the first unrecorded step is redone from its inputs with the
keys ``fold_in(seed, round, purpose)``, so a killed run picks the same
tiles, trains on the same labels and reaches the same metrics as one that
was never interrupted. Committing the round (its checkpoint in
``checkpoints/``, with the whole ledger) ends the state machine; the
round's folder is then deleted.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import shutil
import zipfile
from typing import Iterator

import numpy as np

from priojax.errors import WorkdirError
from priojax.oracle import LedgerEntry
from priojax.scoring import PoolStats
from priojax.selection import Selection
from priojax.state import RoundCheckpoints, Workdir, atomic_write_bytes, atomic_write_json

STEPS = ('scored', 'selected', 'labelled', 'fine_tuned', 'evaluated')


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


class RoundProgress:
  """Reads and writes the steps of round ``round_index`` of a workdir."""

  def __init__(self, workdir: Workdir, round_index: int):
    self.round = round_index
    self.workdir = workdir
    self.folder = workdir.round_folder(round_index)
    self._progress = self.folder / 'progress.json'
    self._done: list[str] = []
    if self._progress.exists():
      try:
        obj = json.loads(self._progress.read_text())
        done = list(obj['done'])
      except (ValueError, KeyError, TypeError):
        raise WorkdirError(f'{self._progress}: unreadable round progress; expected JSON with a '
                           '"done" list (delete the file to redo the round)') from None
      unknown = [s for s in done if s not in STEPS]
      if unknown or done != list(STEPS[:len(done)]):
        raise WorkdirError(f'{self._progress}: "done" is {done}; expected a prefix of {list(STEPS)}')
      self._done = done

  @property
  def done(self) -> tuple[str, ...]:
    return tuple(self._done)

  def has(self, step: str) -> bool:
    return step in self._done

  def mark(self, step: str) -> None:
    """Records ``step`` as finished; its output must already be on disk."""
    expected = STEPS[len(self._done)]
    if step != expected:
      raise WorkdirError(f'{self._progress}: cannot mark {step!r} done; next step is {expected!r}')
    self.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(self._progress, {'round': self.round, 'done': self._done + [step]})
    self._done.append(step)

  def rewind(self, last_kept: str) -> None:
    """Forgets the steps after ``last_kept`` (their outputs are redone)."""
    keep = self._done[:self._done.index(last_kept) + 1]
    if keep != self._done:
      atomic_write_json(self._progress, {'round': self.round, 'done': keep})
      self._done = keep

  def _file(self, name: str) -> pathlib.Path:
    self.folder.mkdir(parents=True, exist_ok=True)
    return self.folder / name

  # --- scored: the pool's statistics (and the core-set reference) ---------

  def save_scores(self, stats: PoolStats, reference: np.ndarray, seconds: float) -> None:
    arrays = {**{f'stat:{k}': v for k, v in stats.columns.items()},
              'ids': stats.ids, 'reference': reference, 'seconds': np.float64(seconds)}
    atomic_write_bytes(self._file('scores.npz'), _npz_bytes(arrays))
    self.mark('scored')

  @contextlib.contextmanager
  def _reading(self, step: str, name: str) -> Iterator[pathlib.Path]:
    """A saved step that cannot be read back is one line, not a traceback."""
    path = self.folder / name
    try:
      yield path
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
      raise WorkdirError(f'{path}: cannot read the output of step {step!r} ({type(e).__name__}: '
                         f'{str(e).splitlines()[0] if str(e) else ""}); delete {self.folder} to redo '
                         f'round {self.round}') from None

  def load_scores(self) -> tuple[PoolStats, np.ndarray, float]:
    with self._reading('scored', 'scores.npz') as path, np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
    columns = {k.removeprefix('stat:'): v for k, v in arrays.items() if k.startswith('stat:')}
    return PoolStats(arrays['ids'], **columns), arrays['reference'], float(arrays['seconds'])

  # --- selected --------------------------------------------------------------

  def save_selection(self, picked: Selection, formula: str) -> None:
    record = {'round': self.round, 'formula': formula, **picked.to_json()}
    # The public copy first: once 'selected' is marked, both exist.
    atomic_write_json(self.workdir.selected(self.round), record)
    arrays = {'ids': picked.ids, 'priorities': picked.priorities, 'pred_iou': picked.pred_iou}
    if picked.scores is not None:
      arrays['scores'] = picked.scores
    atomic_write_bytes(self._file('selection.npz'), _npz_bytes(arrays))
    self.mark('selected')

  def load_selection(self) -> Selection:
    with self._reading('selected', 'selection.npz') as path, np.load(path) as f:
      return Selection(f['ids'], f['priorities'], f['pred_iou'],
                       f['scores'] if 'scores' in f.files else None)

  # --- labelled: this round's ledger entries ---------------------------------

  def save_labels(self, entries: list[LedgerEntry]) -> None:
    atomic_write_json(self._file('labelled.json'), [e.to_json() for e in entries])
    self.mark('labelled')

  def load_labels(self) -> list[LedgerEntry]:
    with self._reading('labelled', 'labelled.json') as path:
      return [LedgerEntry(**e) for e in json.loads(path.read_text())]

  # --- fine_tuned: the train state after the U-Net and the heads -------------

  def _states(self, read_only: bool = False) -> RoundCheckpoints:
    return RoundCheckpoints(self.folder / 'fine_tuned', read_only=read_only)

  def save_state(self, state, info: dict) -> None:
    ckpts = self._states()
    try:
      ckpts.save(self.round, state, info)
    finally:
      ckpts.close()
    self.mark('fine_tuned')

  def load_state(self, template) -> tuple[object, dict]:
    ckpts = self._states(read_only=True)
    try:
      if ckpts.latest_step() != self.round:
        raise WorkdirError(f'{self.folder}: "fine_tuned" is marked done but its checkpoint is '
                           'missing; delete the folder to redo the round')
      return ckpts.restore(self.round, template)
    finally:
      ckpts.close()

  # --- evaluated: the round's metrics record ----------------------------------

  def save_record(self, record: dict) -> None:
    atomic_write_json(self._file('record.json'), record)
    self.mark('evaluated')

  def load_record(self) -> dict:
    with self._reading('evaluated', 'record.json') as path:
      return json.loads(path.read_text())


def clear_finished(workdir: Workdir, last_committed: int) -> None:
  """Deletes the folders of rounds that are committed (a crash between the
  commit and this clean-up leaves one behind)."""
  root = workdir.round_folder(0).parent
  if not root.is_dir():
    return
  for folder in sorted(root.iterdir()):
    index = folder.name.removeprefix('round_')
    if index.isdigit() and int(index) <= last_committed:
      shutil.rmtree(folder)

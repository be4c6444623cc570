"""A round as a list of persisted steps, and the one driver that runs them.

A step is data: its name, how it is computed from the outputs of the steps
before it, and how its output is kept (a ``Store``). ``run_steps`` runs a
round's steps in order; each output is written into ``rounds/round_<r>/``
(atomically: temp file, fsync, rename; a train state as an orbax
checkpoint) and only *then* recorded in ``progress.json``, and the step's
name is announced as a point (hooks.py). On restart every recorded step is
loaded instead of recomputed, and the first unrecorded one is redone from its
inputs with the keys ``fold_in(seed, round, purpose)``, so a killed run picks
the same tiles, trains on the same labels and reaches the same metrics as one
that was never interrupted. Committing the round (loop.py) ends it; the
round's folder is then deleted.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import zipfile
from typing import Any, Callable, Sequence

import numpy as np

from priojax import distributed, hooks
from priojax.atomic_io import atomic_write_json, atomic_write_npz
from priojax.checkpoints import RoundCheckpoints
from priojax.errors import WorkdirError
from priojax.workdir import Workdir


@dataclasses.dataclass(frozen=True)
class Store:
  """How a step's output is kept in the round folder."""

  save: Callable[[pathlib.Path, Any], None]  # (round folder, output)
  load: Callable[[pathlib.Path], Any]  # round folder -> output
  file: str  # what to name when it cannot be read back
  # Saved by every process together (an orbax checkpoint of a global
  # state); the others by the main process alone (distributed.py).
  collective: bool = False


@dataclasses.dataclass(frozen=True)
class Step:
  name: str
  compute: Callable[[dict[str, Any]], Any]  # outputs of the earlier steps -> output
  store: Store


def npz_store(file: str, to_arrays: Callable[[Any], dict], from_arrays: Callable[[dict], Any]) -> Store:
  def save(folder, value):
    atomic_write_npz(folder / file, to_arrays(value))

  def load(folder):
    with np.load(folder / file) as f:
      return from_arrays({k: f[k] for k in f.files})

  return Store(save, load, file)


def json_store(file: str, to_json: Callable[[Any], Any] = lambda v: v,
               from_json: Callable[[Any], Any] = lambda v: v) -> Store:
  def save(folder, value):
    atomic_write_json(folder / file, to_json(value))

  def load(folder):
    return from_json(json.loads((folder / file).read_text()))

  return Store(save, load, file)


def checkpoint_store(folder_name: str, round_index: int, template: Callable[[], Any]) -> Store:
  """A ``(train state, info dict)`` output as an orbax checkpoint."""

  def save(folder, value):
    ckpts = RoundCheckpoints(folder / folder_name)
    try:
      ckpts.save(round_index, *value)
    finally:
      ckpts.close()

  def load(folder):
    ckpts = RoundCheckpoints(folder / folder_name, read_only=True)
    try:
      if ckpts.latest_step() != round_index:
        raise FileNotFoundError(f'no checkpoint of round {round_index} in {folder / folder_name}')
      return ckpts.restore(round_index, template())
    finally:
      ckpts.close()

  return Store(save, load, folder_name, collective=True)


class RoundProgress:
  """The finished steps of round ``round_index`` of a workdir (a prefix of
  ``names``), as recorded in its ``progress.json``. In a multi-process run
  every process keeps the same progress; only the main one writes it, and
  the steps' non-collective outputs."""

  def __init__(self, workdir: Workdir, round_index: int, names: Sequence[str]):
    self.round = round_index
    self.writes = distributed.is_main()
    self.names = tuple(names)
    self.folder = workdir.round_folder(round_index)
    self._progress = self.folder / 'progress.json'
    self._done: list[str] = []
    if self._progress.exists():
      try:
        done = list(json.loads(self._progress.read_text())['done'])
      except (ValueError, KeyError, TypeError):
        raise WorkdirError(f'{self._progress}: unreadable round progress; expected JSON with a '
                           '"done" list (delete the file to redo the round)') from None
      if done != list(self.names[:len(done)]):
        raise WorkdirError(f'{self._progress}: "done" is {done}; expected a prefix of {list(self.names)}')
      self._done = done

  @property
  def done(self) -> tuple[str, ...]:
    return tuple(self._done)

  def has(self, step: str) -> bool:
    return step in self._done

  def _write(self, done: list[str]) -> None:
    if self.writes:
      self.folder.mkdir(parents=True, exist_ok=True)
      atomic_write_json(self._progress, {'round': self.round, 'done': done})
    self._done = done

  def mark(self, step: str) -> None:
    """Records ``step`` as finished; its output must already be on disk."""
    expected = self.names[len(self._done)] if len(self._done) < len(self.names) else None
    if step != expected:
      raise WorkdirError(f'{self._progress}: cannot mark {step!r} done; next step is {expected!r}')
    self._write(self._done + [step])

  def rewind(self, last_kept: str) -> None:
    """Forgets the steps after ``last_kept`` (their outputs are redone)."""
    keep = self._done[:self._done.index(last_kept) + 1]
    if keep != self._done:
      self._write(keep)

  def save(self, step: Step, value: Any) -> None:
    if self.writes or step.store.collective:
      self.folder.mkdir(parents=True, exist_ok=True)
      step.store.save(self.folder, value)
    self.mark(step.name)

  def load(self, step: Step) -> Any:
    """A saved step that cannot be read back is one line, not a traceback."""
    try:
      return step.store.load(self.folder)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
      path = self.folder / step.store.file
      first = str(e).splitlines()[0] if str(e) else ''
      raise WorkdirError(f'{path}: cannot read the output of step {step.name!r} ({type(e).__name__}: '
                         f'{first}); delete {self.folder} to redo round {self.round}') from None


def run_steps(progress: RoundProgress, steps: Sequence[Step]) -> dict[str, Any]:
  """Loads the finished steps, computes and persists the others, in order;
  returns every step's output by name."""
  if tuple(s.name for s in steps) != progress.names:
    raise ValueError(f'steps {[s.name for s in steps]} do not match the progress of {progress.names}')
  outputs: dict[str, Any] = {}
  for step in steps:
    if progress.has(step.name):
      outputs[step.name] = progress.load(step)
    else:
      outputs[step.name] = step.compute(outputs)
      progress.save(step, outputs[step.name])
    hooks.point(step.name)
  return outputs


def clear_finished(workdir: Workdir, last_committed: int) -> None:
  """Deletes the folders of rounds that are committed (a crash between the
  commit and this clean-up leaves one behind). Every process returns once
  the main one has deleted them."""
  root = workdir.rounds()
  if distributed.is_main() and root.is_dir():
    for folder in sorted(root.iterdir()):
      index = folder.name.removeprefix('round_')
      if index.isdigit() and int(index) <= last_committed:
        shutil.rmtree(folder)
  distributed.barrier(f'cleared rounds up to {last_committed}')

"""Everything the run keeps in its workdir, written atomically.

Layout::

  workdir/
    config.json              the config of the first start
    checkpoints/<round>/     orbax: train state + round meta (ledger, history)
    metrics.jsonl            one line per finished round
    selected_round_<r>.json  the tiles picked in round r, with priorities
    tb/                      TensorBoard events
    learning_curve.png

A round is finished exactly when its orbax checkpoint is committed; the
checkpoint's meta holds the labelled-set ledger and the metrics history,
and the JSON side files are rebuilt from it on resume, so a crash at any
instant leaves the previous round complete and the next redoable.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

import jax
import orbax.checkpoint as ocp

from priojax.errors import WorkdirError


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: pathlib.Path, text: str) -> None:
  """Write-temp, fsync, rename: readers see the old file or the new one."""
  atomic_write_bytes(path, text.encode())


def atomic_write_json(path: pathlib.Path, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + '\n')


class Workdir:
  """Paths of one run; creates the workdir but never its parents."""

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path).expanduser().absolute()
    if not self.path.parent.is_dir():
      raise WorkdirError(f'workdir {self.path}: parent directory {self.path.parent} does not exist')
    if self.path.exists() and not self.path.is_dir():
      raise WorkdirError(f'workdir {self.path}: exists and is not a directory')
    self.path.mkdir(exist_ok=True)

  @property
  def checkpoints(self) -> pathlib.Path:
    return self.path / 'checkpoints'

  @property
  def metrics(self) -> pathlib.Path:
    return self.path / 'metrics.jsonl'

  @property
  def tensorboard(self) -> pathlib.Path:
    return self.path / 'tb'

  @property
  def learning_curve(self) -> pathlib.Path:
    return self.path / 'learning_curve.png'

  @property
  def config(self) -> pathlib.Path:
    return self.path / 'config.json'

  def export(self, round_index: int) -> pathlib.Path:
    return self.path / 'export' / f'round_{round_index}'

  def annotations(self, round_index: int) -> pathlib.Path:
    """Where annotators put their GeoJSON for the round (human mode)."""
    return self.path / 'annotations' / f'round_{round_index}'

  def imported_labels(self, round_index: int) -> pathlib.Path:
    return self.path / 'labels' / f'round_{round_index}.npz'

  def selected(self, round_index: int) -> pathlib.Path:
    return self.path / f'selected_round_{round_index}.json'


class RoundCheckpoints:
  """Orbax checkpoints, one step per round (0 = the pretrained model)."""

  def __init__(self, directory: pathlib.Path, *, read_only: bool = False):
    self.directory = pathlib.Path(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,  # a few rounds; round 0 is needed again for 'reset' fine-tuning
        create=not read_only, read_only=read_only,
        enable_async_checkpointing=False)  # save() returns only once the round is committed
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'meta'))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, round_index: int, state, meta: dict) -> None:
    self._manager.save(round_index, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def restore(self, round_index: int, template) -> tuple[Any, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    out = self._manager.restore(round_index, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out.state, out.meta

  def close(self) -> None:
    self._manager.close()

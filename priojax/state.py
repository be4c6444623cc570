"""Everything the run keeps in its workdir, written atomically.

Layout::

  workdir/
    config.json              the config of the first start
    checkpoints/<round>/     orbax: train state + round meta (ledger, history)
    metrics.jsonl            one line per finished round
    selected_round_<r>.json  the tiles picked in round r, with priorities
    rounds/round_<r>/        the unfinished round's finished steps (round_state.py)
    tb/                      TensorBoard events
    learning_curve.png

A round is finished exactly when its orbax checkpoint is committed; the
checkpoint's meta holds the labelled-set ledger and the metrics history, and
metrics.jsonl is rebuilt from it on resume. Until then the round's finished
steps live in rounds/round_<r>/ (round_state.py), so a crash at any instant
leaves the previous round complete and the next one resumable from its last
finished step.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import re
import tempfile
from typing import Any, Iterator

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


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DISK_FULL_TEXT = ('No space left on device', 'Disk quota exceeded', 'File too large')


def _chain(exc: BaseException | None) -> list[BaseException]:
  out = []
  while exc is not None and all(exc is not e for e in out):
    out.append(exc)
    exc = exc.__cause__ or exc.__context__
  return out


def _disk_full(exc: BaseException) -> tuple[str, str] | None:
  """(where, reason) when ``exc`` comes from a full disk; orbax and
  tensorstore wrap the OSError, sometimes keeping only its message."""
  reason, where = None, None
  for e in _chain(exc):
    if isinstance(e, OSError) and e.errno in _DISK_FULL:
      reason = reason or os.strerror(e.errno)
      where = where or e.filename
    text = next((t for t in _DISK_FULL_TEXT if t in str(e)), None)
    if text:
      reason = reason or text
      # tensorstore: 'Failed writing: "<path>": ... File too large'
      quoted = re.search(r'Failed writing: "([^"]+)"', str(e)) or re.search(r'"(/[^"]+)"', str(e))
      where = where or (quoted.group(1) if quoted else None)
  return None if reason is None else (where, reason)


@contextlib.contextmanager
def disk_errors(workdir: 'Workdir') -> Iterator[None]:
  """A full disk (or quota, or file-size limit) as one WorkdirError line."""
  try:
    yield
  except Exception as e:  # noqa: BLE001  (re-raised unless it is a full disk)
    full = _disk_full(e)
    if full is None:
      raise
    where, reason = full
    raise WorkdirError(f'{where or workdir.path}: {reason} while writing the workdir; the last '
                       'committed round is intact: free some space and rerun the same command '
                       'to resume') from None


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

  def round_folder(self, round_index: int) -> pathlib.Path:
    """The unfinished round's steps (see round_state.py)."""
    return self.path / 'rounds' / f'round_{round_index}'


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

  def read_meta(self, round_index: int) -> dict:
    """The round's ledger and history, without restoring the train state."""
    return self._manager.restore(round_index, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore())).meta

  def close(self) -> None:
    self._manager.close()

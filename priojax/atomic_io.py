"""Atomic file writes, and a full disk as one error line.

Every file priojax writes (workdir state, exports, converted datasets,
comparison tables and plots) goes through ``atomic_path``: the content is
written to a unique temporary name in the same folder, fsynced, and renamed
over the target, so a reader (or a restarted run) sees the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pathlib
import re
import tempfile
from typing import Any, Iterator

import numpy as np

from priojax.errors import WorkdirError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside ``path`` for a writer that wants a file
  name (rasterio, matplotlib); on success it is fsynced and renamed onto
  ``path``, on failure removed."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix=f'.tmp{path.suffix}')
  os.close(fd)
  try:
    yield pathlib.Path(tmp)
    with open(tmp, 'rb+') as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  with atomic_path(path) as tmp:
    tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + '\n')


def atomic_write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], *,
                     compressed: bool = False) -> None:
  buf = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(buf, **arrays)
  atomic_write_bytes(path, buf.getvalue())


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DISK_FULL_TEXT = ('No space left on device', 'Disk quota exceeded', 'File too large')


def _chain(exc: BaseException | None) -> list[BaseException]:
  out = []
  while exc is not None and all(exc is not e for e in out):
    out.append(exc)
    exc = exc.__cause__ or exc.__context__
  return out


def disk_full(exc: BaseException) -> tuple[str | None, str] | None:
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
def disk_errors(folder: pathlib.Path) -> Iterator[None]:
  """A full disk (or quota, or file-size limit) while writing ``folder`` as
  one WorkdirError line."""
  try:
    yield
  except Exception as e:  # noqa: BLE001  (re-raised unless it is a full disk)
    full = disk_full(e)
    if full is None:
      raise
    where, reason = full
    raise WorkdirError(f'{where or folder}: {reason} while writing the workdir; the last '
                       'committed round is intact: free some space and rerun the same command '
                       'to resume') from None

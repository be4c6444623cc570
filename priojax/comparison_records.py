"""What a comparison keeps of each finished run: its metrics history, by seed.

::

  workdir/records/seed<s>.json   {"seed": s, "runs": {<run>: {"config": <digest>,
                                   "settings": {...}, "history": [...]}}}

with ``<run>`` one of ``pretrain``, ``runs/<strategy>`` and ``reference``, as
the run folders are named. The comparison's tables, plots and time table
are made from the runs' histories alone, so a seed whose runs are all
recorded needs none of its run folders. That is what makes a comparison of
many hours portable:

- the run folders (tens of MB of checkpoints a run) may be deleted once a
  seed is recorded, and the report is still rebuilt, nothing rerun;
- seeds run on other machines are gathered by copying their records into
  ``records/``, or read from another folder (``config.records``, e.g. the
  records the results page ships in ``docs/records/<section>/``).

A record stands for a run only if the run's config is the same: the digest
covers every field that shapes what the run computes, and leaves out only
where files live (the dataset cache, the source model's folder) and what
only shapes the review page. A run whose config changed is run again, and
its record replaced.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

from absl import logging

from priojax.atomic_io import atomic_write_json
from priojax.config_checks import flatten
from priojax.errors import ConfigError, WorkdirError

FOLDER = 'records'
# Where files live (machine-specific), and the switch that only permits a change.
_NOT_DIGESTED = frozenset({'data.data_dir', 'pretrain.from_workdir', 'allow_config_change'})
_VIEW_ONLY = ('review.',)


def digest(config) -> str:
  """sha256 of the fields of a resolved run config that shape its results."""
  fields = {k: v for k, v in flatten(json.loads(config.to_json())).items()
            if k not in _NOT_DIGESTED and not k.startswith(_VIEW_ONLY)}
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def record_path(folder: pathlib.Path, seed: int) -> pathlib.Path:
  return folder / f'seed{seed}.json'


def read(path: pathlib.Path) -> dict:
  """One seed's record file, or one line saying what is wrong with it."""
  try:
    record = json.loads(path.read_text())
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    raise WorkdirError(f'{path}: not a readable seed record ({e}); delete it to rerun its runs') from None
  if not isinstance(record, dict) or not isinstance(record.get('runs'), dict) or 'seed' not in record:
    raise WorkdirError(f'{path}: expected a seed record {{"seed": ..., "runs": {{...}}}}; delete it to rerun '
                       'its runs')
  return record


class SeedRecords:
  """The workdir's records (read and written) and, optionally, a folder of
  records made elsewhere (read only; a run found there is copied into the
  workdir's records, so that the workdir holds the whole comparison)."""

  def __init__(self, workdir: pathlib.Path, elsewhere: str = '', write: bool = True):
    self.folder = workdir / FOLDER
    self.elsewhere = pathlib.Path(elsewhere).expanduser() if elsewhere else None
    if self.elsewhere is not None and not self.elsewhere.is_dir():
      raise ConfigError(f'config.records: {self.elsewhere} is not a folder of seed records')
    self.write = write

  def history(self, seed: int, run: str, config) -> list[dict] | None:
    """The recorded history of ``run`` for ``seed`` if it was made with this
    config; None if it must be run."""
    want = digest(config)
    for folder in (self.folder, self.elsewhere):
      if folder is None:
        continue
      path = record_path(folder, seed)
      entry = read(path).get('runs', {}).get(run)
      if entry is None:
        continue
      if entry.get('config') != want:
        logging.info('[records] %s: %s was made with another config; it runs again', path, run)
        continue
      if folder != self.folder:
        self.put(seed, run, config, entry['history'])
      return entry['history']
    return None

  def put(self, seed: int, run: str, config, history: list[dict], settings: dict | None = None) -> None:
    """Records ``run``'s finished history (main process only)."""
    if not self.write:
      return
    self.folder.mkdir(exist_ok=True)
    path = record_path(self.folder, seed)
    record = read(path) or {'seed': seed, 'runs': {}}
    record['runs'][run] = {'config': digest(config), 'settings': settings or {}, 'history': history}
    atomic_write_json(path, record)


def export(workdir: pathlib.Path, seeds: tuple[int, ...], to: pathlib.Path) -> list[pathlib.Path]:
  """Copies the records of ``seeds`` from the workdir into ``to``, replacing
  the folder's records of other seeds (it then holds exactly what one
  comparison was made from)."""
  sources = [record_path(workdir / FOLDER, s) for s in seeds]
  missing = [str(p) for p in sources if not p.exists()]
  if missing:
    raise WorkdirError(f'no seed record at {", ".join(missing)}: the comparison has not finished those seeds')
  to.mkdir(parents=True, exist_ok=True)
  for old in to.glob('seed*.json'):
    if old.name not in {p.name for p in sources}:
      old.unlink()
  written = []
  for source in sources:
    target = to / source.name
    atomic_write_json(target, read(source))
    written.append(target)
  return written

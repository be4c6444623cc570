"""The scenes a run's chip ids point into, held fixed from its first start.

A chip's id is ``scene index * CHIPS_PER_SCENE + chip index`` (builder.py),
the scene index being its place in the manifest. The ledger, the pool
history and the annotators' files all name chips by id, so a manifest whose
scenes are reordered, or a scene whose image is replaced by another, would
silently point every id at another chip. The first start writes the table
``scenes.json`` (scene id -> index, region, a hash of the image's contents)
into the workdir; each later start refuses a manifest that disagrees with
it, naming the scene. Scenes added after the last one keep every old id and
are allowed.
"""

from __future__ import annotations

import json
import pathlib

from priojax import distributed
from priojax.atomic_io import atomic_write_json
from priojax.errors import WorkdirError

FILE = 'scenes.json'


def table(scenes: dict) -> dict:
  """What fixes the ids, per scene, from the dataset's scene metadata."""
  return {name: {'index': int(meta['index']), 'region': meta['region'], 'image': meta['image'],
                 'fingerprint': meta.get('fingerprint')}
          for name, meta in scenes.items()}


def check_same_scenes(workdir: pathlib.Path, scenes: dict, manifest: str) -> None:
  """Writes the table on a first start; on a later one, refuses a manifest
  whose scenes would give the run's chip ids to other chips."""
  path = pathlib.Path(workdir) / FILE
  now = table(scenes)
  if not path.exists():
    distributed.barrier('scene table read')
    if distributed.is_main():
      atomic_write_json(path, now)
    return
  then = json.loads(path.read_text())
  distributed.barrier('scene table read')
  for name, old in sorted(then.items(), key=lambda kv: kv[1]['index']):
    new = now.get(name)
    where = f'{manifest}: scene {name!r}'
    if new is None:
      raise WorkdirError(f'{where} (scenes[{old["index"]}] when the run in {workdir} started) is gone; '
                         'the run\'s chip ids point into it: restore it, or start a new workdir')
    if new['index'] != old['index']:
      raise WorkdirError(f'{where} is scenes[{new["index"]}] now and was scenes[{old["index"]}] when the '
                         f'run in {workdir} started; chip ids follow the scenes\' order: restore it '
                         '(add new scenes at the end), or start a new workdir')
    if old.get('fingerprint') and new['fingerprint'] != old['fingerprint']:
      raise WorkdirError(f'{where}: its image {new["image"]} holds other pixels than when the run in '
                         f'{workdir} started (its chips have the same ids); restore it, or start a new '
                         'workdir')
  grown = {name: meta for name, meta in now.items() if name not in then}
  if grown and distributed.is_main():
    atomic_write_json(path, {**then, **grown})

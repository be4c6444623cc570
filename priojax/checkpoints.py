"""Orbax checkpoints of the train state, one step per round.

A round is committed exactly when its checkpoint is: orbax writes it into a
temporary folder and renames that into place. The rename goes through
``_AnnouncedRename``, orbax's own atomic-rename temporary path (its public
``temporary_path_class`` option) that first announces the
``checkpoint_writing`` point (hooks.py), so a kill test can stop a run
between the write and the rename without touching orbax's internals.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from priojax import hooks


class _AnnouncedRename(ocp.path.atomicity.AtomicRenameTemporaryPath):

  async def finalize(self, *args, **kwargs):
    # Orbax finalizes each item's folder, then the step's: announce the last
    # moment, everything written and only the step's rename left.
    if self.get_final().name.isdigit():
      hooks.point('checkpoint_writing')
    return await super().finalize(*args, **kwargs)


class RoundCheckpoints:
  """Orbax checkpoints, one step per round (0 = the pretrained model), each
  holding the train state, a JSON meta (ledger and metrics history) and,
  from round 1 on, the pool history (pool_history.py) as arrays."""

  def __init__(self, directory: pathlib.Path, *, read_only: bool = False, commits_rounds: bool = False):
    """``commits_rounds``: these are the workdir's round checkpoints, whose
    save commits a round (and announces ``checkpoint_writing``)."""
    self.directory = pathlib.Path(directory).absolute()  # orbax takes absolute paths only
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,  # a few rounds; round 0 is needed again for 'reset' fine-tuning
        create=not read_only, read_only=read_only,
        enable_async_checkpointing=False,  # save() returns only once the round is committed
        temporary_path_class=_AnnouncedRename if commits_rounds else None)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'meta', 'pool'))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, round_index: int, state, meta: dict, pool: dict | None = None) -> None:
    items = {'state': ocp.args.StandardSave(state), 'meta': ocp.args.JsonSave(meta)}
    if pool is not None:
      items['pool'] = ocp.args.StandardSave(pool)
    self._manager.save(round_index, args=ocp.args.Composite(**items))
    self._manager.wait_until_finished()

  def restore(self, round_index: int, template) -> tuple[Any, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    out = self._manager.restore(round_index, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out.state, out.meta

  def read_meta(self, round_index: int) -> dict:
    """The round's ledger and history, without restoring the train state."""
    return self._manager.restore(round_index, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def read_pool(self, round_index: int) -> dict | None:
    """The round's pool arrays, None for a round saved without them."""
    try:
      out = self._manager.restore(round_index, args=ocp.args.Composite(pool=ocp.args.StandardRestore()))
    except KeyError:  # orbax: 'Item "pool" was not found in the checkpoint'
      return None
    return dict(out.pool)

  def close(self) -> None:
    self._manager.close()

"""A formula for the kill tests that reads both kinds of round history: the
pool's predicted IoU of earlier rounds (``iou_trend``) and the ledger's IoU
at pick of the labelled tiles (``iou_gain``). Loaded by the launcher as
``history_formula:trend_and_gain`` (tests/ on PYTHONPATH)."""

from priojax import priority
from priojax.priority import learnability


@priority.register('trend_and_gain', reads=('pred_iou', 'embedding', 'label_iou', 'label_iou_at_pick'))
def trend_and_gain(stats, ctx):
  return learnability.iou_trend_priority(stats, ctx) + learnability.iou_gain_priority(stats, ctx)

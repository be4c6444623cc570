r"""Pool-scoring throughput and memory: priojax vs an eager PyTorch loop.

    .venv/bin/pip install -e '.[bench]'      # torch==2.13.0, the CPU build
    .venv/bin/python benchmarks/scoring.py              # width 8, pool 2048
    .venv/bin/python benchmarks/scoring.py --width=32
    .venv/bin/python benchmarks/scoring.py --quick      # under 2 minutes

Per formula family, both sides compute the same per-tile statistics from
the same U-Net with the same weights (copied from the Flax parameters; the
statistics are checked equal on the first batch):

* ``iou``: the U-Net and the IoU head (``pred_iou``), all the ``iou`` formula
  reads;
* ``entropy``: the U-Net, the mean pixel entropy and the picks' ``pred_iou``
  (what a run of the ``entropy`` formula scores);
* ``bald``: the same plus T MC-dropout passes for BALD (U-Net dropout 0.1,
  as in the comparison); the draws differ between the sides, so only the
  deterministic statistics are compared.

*End to end*: every tile of a TFDS ``crisis_bench`` pool split (array_record,
read through ``as_data_source()`` and the same grain reader on both sides)
to host statistics; priojax through ``Scorer.score`` (jit + vmap, batches
sharded over one XLA device per core), PyTorch eager under
``inference_mode`` in channels-last layout. *Model only*: the U-Net forward
on batches already in memory. Both sides take turns, after a warm-up; each
reports its best pass. FLOP counts come from XLA's cost analysis of the
compiled scoring function; the same network means the same count for
PyTorch. Memory: the peak RSS of a fresh process scoring a pool of 2k, and of
one scoring 20k tiles made on read, shows that the driver streams. The last
line is the end-to-end ratio for ``iou``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import jax
import numpy as np
from absl import app, flags

import results_block
import timing
from priojax import compile_cache
from priojax import mesh as mesh_lib
from priojax import priority, tile_stats
from priojax.data import builders
from priojax.data.generated import GeneratedPool
from priojax.data.pool import TileSource
from bench_models import describe, priojax_networks, torch_model
from priojax.models.networks import Networks
from priojax.models.unet import preprocess
from priojax.scoring import Scorer

_TILE = flags.DEFINE_integer('tile_size', 64, 'Tile side in pixels.')
_WIDTH = flags.DEFINE_integer('width', 8, 'U-Net width.')
_DEPTH = flags.DEFINE_integer('depth', 3, 'U-Net depth.')
_ENCODER = flags.DEFINE_enum('encoder', 'none', ['none', 'mobilenet_v2'],
                             "'none': the from-scratch U-Net; else the U-Net over that ImageNet encoder.")
_POOL = flags.DEFINE_integer('pool', 2048, 'Tiles in the TFDS pool split.')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Scoring batch size.')
_MC = flags.DEFINE_integer('mc_passes', 6, 'MC-dropout passes for bald.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed passes per side (best is reported).')
_RSS_ONLY = flags.DEFINE_integer('rss_only', 0, 'Internal: score a pool of this size, print peak RSS.')
_RSS_POOLS = flags.DEFINE_list('rss_pools', ['2000', '20000'], 'Pool sizes for the peak-RSS check.')
_DATA_DIR = flags.DEFINE_string('data_dir', '~/.cache/priojax/tensorflow_datasets', 'TFDS data dir.')
_QUICK = flags.DEFINE_bool('quick', False, 'Pool 256, 2 passes, RSS pools 1k/10k: under 2 minutes.')
_TORCH = flags.DEFINE_bool('torch', True, 'Also time the eager PyTorch baseline.')
_CPU_DEVICES = flags.DEFINE_integer('cpu_devices', 0, 'XLA CPU devices (0: one per core).')
_XLA_ELTWISE = flags.DEFINE_bool('xla_eltwise_fusion', False,
                                 'Compile with YNNPACK element-wise fusion added (measured alternative).')
_PEAK = flags.DEFINE_float('peak_gflops', timing.REFERENCE_PEAK_GFLOPS, 'Nominal fp32 peak of this CPU.')

FAMILIES = ('iou', 'entropy', 'bald')
ELTWISE = ('LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
           'LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_ELTWISE')


def family_scorer(family: str, mesh) -> tuple[Networks, Scorer, dict]:
  """The networks, scorer and parameters a run of ``family``'s formula builds."""
  dropout = 0.1 if family == 'bald' else 0.0
  net, params = priojax_networks(_ENCODER.value, depth=_DEPTH.value, width=_WIDTH.value, dropout=dropout,
                                 tile_size=_TILE.value)
  formula = priority.get(family)
  stats = tile_stats.for_formula(formula, {'aggregation': 'mean'})
  return net, Scorer(net, mesh, _BATCH.value, tile_stats.StatsSpec.of(stats, mc_passes=_MC.value)), params


class TorchScorer:
  """The same statistics, eagerly, batch by batch from the same reader."""

  def __init__(self, torch, params: dict, family: str):
    import torch_unet  # noqa: PLC0415

    self.torch, self.lib, self.family = torch, torch_unet, family
    dropout = 0.1 if family == 'bald' else 0.0
    self.model = torch_model(params['unet'], _ENCODER.value, depth=_DEPTH.value, dropout=dropout).eval()
    self.model = self.model.to(memory_format=torch.channels_last)
    self.head = torch_unet.TorchIoUHead(params['head']).eval()

  def batch_stats(self, images: np.ndarray) -> dict[str, np.ndarray]:
    lib, torch = self.lib, self.torch
    x = lib.to_input(images)
    logits, bottleneck, fine = self.model(x)
    out = {'pred_iou': self.head(lib.head_inputs(x, logits, bottleneck, fine, 128))}
    probs = torch.sigmoid(logits)
    if self.family == 'entropy':
      out['entropy/mean'] = lib.pixel_entropy(probs).mean(dim=(1, 2))
    if self.family == 'bald':
      self.model.train()  # dropout on (GroupNorm has no train mode)
      probs_t = torch.stack([torch.sigmoid(self.model(x)[0]) for _ in range(_MC.value)])
      self.model.eval()
      bald = lib.pixel_entropy(probs_t.mean(0)) - lib.pixel_entropy(probs_t).mean(0)
      out['bald/mean'] = bald.mean(dim=(1, 2))
    return {k: v.numpy() for k, v in out.items()}

  def score(self, source: TileSource, batch_size: int) -> dict[str, np.ndarray]:
    parts = []
    with self.torch.inference_mode():
      for batch in source.batches(batch_size, fields=('id', 'image')):
        parts.append({'id': batch['id'], **self.batch_stats(batch['image'])})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def max_stat_diff(ours, theirs: dict) -> float:
  n = len(theirs['id'])
  np.testing.assert_array_equal(ours.ids[:n], theirs['id'])
  keys = [k for k in theirs if k != 'id' and not k.startswith('bald')]
  return max(float(np.abs(np.asarray(ours[k])[:n] - theirs[k]).max()) for k in keys)


def model_only(net, scorer, torch, params, images):
  """Forward passes of the U-Net alone on an in-memory batch, both sides."""
  mesh = scorer.mesh
  forward = jax.jit(lambda p, x: net.unet.apply({'params': p}, preprocess(x), train=False)[0])
  p_dev = mesh_lib.replicate(mesh, params['unet'])
  x_dev = mesh_lib.shard_batch(mesh, images)
  sides = {'priojax': lambda: jax.block_until_ready(forward(p_dev, x_dev))}
  if torch is not None:
    ts = TorchScorer(torch, params, 'iou')
    x = ts.lib.to_input(images)

    def torch_forward():
      with torch.inference_mode():
        ts.model(x)

    sides['pytorch'] = torch_forward
  for fn in sides.values():
    fn()
  reps = max(3, _REPEATS.value)
  return {k: len(images) / t for k, t in timing.interleaved_best(sides, reps).items()}


def bench_family(family: str, mesh, torch, pool: TileSource, images: np.ndarray) -> dict:
  net, scorer, params = family_scorer(family, mesh)
  row = {'family': family, 'stats': ', '.join(scorer.stat_names), 'tiles': len(pool)}
  ours = scorer.score(params, pool, key=jax.random.key(0))  # compile + warm-up
  sides = {'priojax': lambda: scorer.score(params, pool, key=jax.random.key(0))}
  if torch is not None:
    theirs = TorchScorer(torch, params, family)
    head = pool.read(np.arange(min(len(pool), scorer.batch_size)))
    first = theirs.score(TileSource([{'id': i, 'image': im} for i, im in zip(head['id'], head['image'])],
                                    'first'), scorer.batch_size)
    row['diff'] = max_stat_diff(ours, first)
    sides['pytorch'] = lambda: theirs.score(pool, scorer.batch_size)
  best = timing.interleaved_best(sides, _REPEATS.value)
  row.update({f'{k}_e2e': len(pool) / t for k, t in best.items()})
  if family == 'iou':
    row.update({f'{k}_model': v for k, v in model_only(net, scorer, torch, params, images).items()})
  flops = timing.program_flops(
      scorer._stats, mesh_lib.replicate(mesh, params),
      mesh_lib.shard_batch(mesh, images[:scorer.batch_size]),
      mesh_lib.shard_batch(mesh, np.arange(scorer.batch_size, dtype=np.uint32)), jax.random.key(0))
  row['gflop_per_tile'] = flops / scorer.batch_size / 1e9
  return row


def tfds_pool(size: int, tile_size: int, data_dir: str) -> TileSource:
  """The ``crisis_bench`` target pool of ``size`` tiles, built on first use.

  stdout is the benchmark's result (``--results_section`` copies it into
  docs/benchmarks.md), so TFDS's notice of a first build goes to stderr.
  """
  bcfg = builders.make_builder_config(tile_size=tile_size, seed=0, num_source_train=1, num_source_val=1,
                                      num_target_pool=size, num_target_test=1)
  with contextlib.redirect_stdout(sys.stderr):
    return TileSource(builders.load_crisis_bench(bcfg, data_dir)['target_pool'], 'target_pool')


def rss_of_one_pool(n: int) -> None:
  """Scores a pool of ``n`` tiles made on read and prints this process's peak RSS."""
  mesh = mesh_lib.make_mesh()
  _, scorer, params = family_scorer('iou', mesh)
  stats = scorer.score(params, TileSource(GeneratedPool(n, _TILE.value), f"synthetic{n}"), key=jax.random.key(0))
  assert len(stats) == n
  print(f'RSS_MIB {timing.peak_rss_mib():.1f}')


def rss_check() -> list[tuple[int, float]]:
  """Peak RSS of scoring each pool size, each in a fresh process (a peak is
  a process's maximum so far: measured in this one it would be the
  benchmark's other parts)."""
  out = []
  for n in sorted(int(p) for p in _RSS_POOLS.value):
    cmd = [sys.executable, __file__, f'--rss_only={n}', f'--width={_WIDTH.value}', f'--depth={_DEPTH.value}',
           f'--encoder={_ENCODER.value}',
           f'--tile_size={_TILE.value}', f'--batch_size={_BATCH.value}', f'--cpu_devices={_CPU_DEVICES.value}']
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out.append((n, float(result.stdout.split('RSS_MIB')[-1])))
  return out


def main(argv):
  del argv
  mesh_lib.use_cpu_devices(_CPU_DEVICES.value)
  if _RSS_ONLY.value:
    rss_of_one_pool(_RSS_ONLY.value)
    return
  if _XLA_ELTWISE.value:
    compile_cache.CPU_COMPILER_OPTIONS['xla_cpu_experimental_ynn_fusion_type'] = ELTWISE
  pool_size, repeats = (256, 2) if _QUICK.value else (_POOL.value, _REPEATS.value)
  if _QUICK.value:  # the same table from a smaller pool; the RSS pools 1k and 10k
    flags.FLAGS.repeats = repeats
    flags.FLAGS.rss_pools = ['1000', '10000']
  torch = timing.torch_or_none() if _TORCH.value else None
  mesh = mesh_lib.make_mesh()
  print(timing.machine_line())
  if torch is not None:
    print(f'torch {torch.__version__}, {torch.get_num_threads()} intra-op threads')
  pool = tfds_pool(pool_size, _TILE.value, _DATA_DIR.value)
  images = pool.read(np.arange(min(len(pool), _BATCH.value)))['image']
  print(f'{describe(_ENCODER.value, _DEPTH.value)}, width {_WIDTH.value}, {_TILE.value} px tiles, TFDS pool of '
        f'{len(pool)}, batch {_BATCH.value}, {mesh.devices.size} XLA device(s), MC passes {_MC.value}'
        f'{", YNN eltwise fusion" if _XLA_ELTWISE.value else ""}; best of {repeats} passes per side')
  rows = [bench_family(f, mesh, torch, pool, images) for f in FAMILIES]
  rss = rss_check()
  timing.print_table_head(['family', 'statistics', 'priojax end-to-end tiles/s', 'PyTorch end-to-end tiles/s',
                           'priojax/PyTorch', 'GFLOP/tile', 'priojax GFLOP/s (% of nominal peak)',
                           'max abs stat diff'], text_columns=2)
  for r in rows:
    pt = r.get('pytorch_e2e')
    gflops = r['gflop_per_tile'] * r['priojax_e2e']
    print(f"| `{r['family']}` | {r['stats']} | {r['priojax_e2e']:.0f} | {timing.cell(pt, '.0f')} | "
          f"{timing.ratio(r['priojax_e2e'], pt)} | {r['gflop_per_tile']:.3f} | "
          f"{gflops:.1f} ({100 * gflops / _PEAK.value:.0f} %) | {r.get('diff', float('nan')):.1e} |")
  iou = rows[0]
  if 'pytorch_model' in iou:
    print(f"\nmodel only (U-Net forward, batch {len(images)} in memory): priojax {iou['priojax_model']:.0f} "
          f"tiles/s, PyTorch {iou['pytorch_model']:.0f} tiles/s, ratio "
          f"{iou['priojax_model'] / iou['pytorch_model']:.2f}")
  else:
    print(f"\nmodel only (U-Net forward, batch {len(images)} in memory): priojax {iou['priojax_model']:.0f} tiles/s")
  (n0, r0), (n1, r1) = rss[0], rss[-1]
  mib = n1 * _TILE.value**2 * 3 / 2**20
  print(f'peak RSS of a process scoring a pool made on read (iou): {r0:.0f} MiB for {n0} tiles, '
        f'{r1:.0f} MiB for {n1} tiles (+{r1 - r0:.0f} MiB; the larger pool\'s pixels are {mib:.0f} MiB)')
  if 'pytorch_e2e' in iou:
    print(f"end-to-end priojax/pytorch = {iou['priojax_e2e'] / iou['pytorch_e2e']:.2f}")


if __name__ == '__main__':
  app.run(results_block.recorded(main))

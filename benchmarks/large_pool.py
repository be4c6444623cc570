r"""Pool-scale scoring and selection, on 1 and on 2 processes.

    .venv/bin/python benchmarks/large_pool.py            # pools of 10^4, 10^5, 10^6
    .venv/bin/python benchmarks/large_pool.py --quick    # 10^3 and 10^4: under 2 minutes

For each process count (1, then 2 processes on localhost talking through
``jax.distributed`` and gloo, the machine's cores split between them as XLA
devices) and each pool size, fresh worker processes:

* score a pool of tiles made on read (``GeneratedPool``: no pixels held)
  with ``Scorer.score`` (``--stats``: by default what ``iou_gain`` reads,
  the predicted IoU and the embedding), each process reading only its
  share of every global batch;
  tiles/s is the whole pool over the wall time of that call, after a
  warm-up that compiled it; peak RSS is each process's maximum (the
  largest of the processes is reported);
* at the largest pool, time every registered priority formula's
  ``selection.select`` on the same synthetic statistics on every process
  (``--embed_dim`` 128 embeddings in 64 clusters, 200 labelled tiles, a
  reference set of 1,000 source embeddings, one round of history; columns
  a formula reads that scoring would fill are uniform draws keyed by the
  seed): the first call (with compilation) and the next. Each process
  computes the same selection; the workers print a digest of every pick
  and the driver checks they agree across processes and process counts.

Everything is printed as markdown tables. Two processes share this
machine's cores, so on one host they measure that the run is correct and
streams, not a speed-up. On a pod slice or a SLURM job (BUILD.md), run one
worker per host yourself, the same command on every host:

    .venv/bin/python benchmarks/large_pool.py --worker --pool=1000000 --select --distributed_auto

(or ``--num_processes=N --process_id=i --coordinator_address=host0:port``);
each prints its line of results (RESULT {json}).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import jax
from absl import app, flags

import results_block
import timing
from selection_timing import FIRST_ID, LABELLED, time_selection
from priojax import distributed, tile_stats
from priojax import mesh as mesh_lib
from priojax.data.generated import GeneratedPool
from priojax.data.pool import TileSource
from priojax.models.heads import iou_head
from priojax.models.networks import Networks
from priojax.models.unet import UNet
from priojax.scoring import Scorer

_POOLS = flags.DEFINE_list('pools', ['10000', '100000', '1000000'], 'Pool sizes (tiles).')
_PROCESSES = flags.DEFINE_list('processes', ['1', '2'], 'Process counts.')
_TILE = flags.DEFINE_integer('tile_size', 32, 'Tile side in pixels.')
_WIDTH = flags.DEFINE_integer('width', 8, 'U-Net width.')
_DEPTH = flags.DEFINE_integer('depth', 3, 'U-Net depth.')
_BATCH = flags.DEFINE_integer('batch_size', 256, 'Global scoring batch.')
_STATS = flags.DEFINE_list('stats', ['pred_iou', 'embedding'], 'Statistics scored per tile (what '
                           'iou_gain reads; "all": every one a formula can read without MC dropout).')
_EMBED = flags.DEFINE_integer('embed_dim', 128, 'Embedding width of the selection statistics.')
_K = flags.DEFINE_integer('k', 100, 'Tiles picked per selection.')
_SELECT_POOL = flags.DEFINE_integer('select_pool', 0, 'Pool size for the selection timings (0: the largest).')
_QUICK = flags.DEFINE_bool('quick', False, 'Pools 10^3 and 10^4 (selection at 10^4): under 2 minutes.')
_JSON = flags.DEFINE_string('json', '', 'Also write the results here.')
# One worker (the driver starts them; on a cluster, start one per host).
_WORKER = flags.DEFINE_bool('worker', False, 'Run as one worker process of a benchmark run.')
_POOL = flags.DEFINE_integer('pool', 10000, 'Worker: pool size.')
_SELECT = flags.DEFINE_bool('select', False, 'Worker: also time every formula\'s selection.')
_NUM = flags.DEFINE_integer('num_processes', 1, 'Worker: processes in the run.')
_ID = flags.DEFINE_integer('process_id', 0, 'Worker: this process (0 .. num_processes - 1).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', '', 'Worker: process 0\'s host:port.')
_AUTO = flags.DEFINE_bool('distributed_auto', False, 'Worker: let jax.distributed read the cluster '
                          '(Cloud TPU, SLURM) instead of the three flags above.')
_DEVICES = flags.DEFINE_integer('cpu_devices', 0, 'Worker: XLA CPU devices (0: one per core; CPU only).')

def worker() -> None:
  mesh_lib.use_cpu_devices(_DEVICES.value)
  distributed.initialize(distributed.ProcessSpec(_COORDINATOR.value, _NUM.value, _ID.value, timeout_s=120,
                                                 auto=_AUTO.value), {'pool': str(_POOL.value)})
  net = Networks(UNet(depth=_DEPTH.value, width=_WIDTH.value), iou_head())
  params = jax.jit(net.init, static_argnums=1)(jax.random.key(0), _TILE.value)
  names = tile_stats.SCALARS + tile_stats.MAP_STATS if _STATS.value == ['all'] else tuple(_STATS.value)
  scorer = Scorer(net, mesh_lib.make_mesh(), batch_size=_BATCH.value, spec=tile_stats.StatsSpec.of(names))
  scorer.score(params, TileSource(GeneratedPool(2 * scorer.batch_size, _TILE.value), 'warm-up'))
  source = TileSource(GeneratedPool(_POOL.value, _TILE.value, first_id=FIRST_ID), 'pool')
  start = time.perf_counter()
  stats = scorer.score(params, source)
  seconds = time.perf_counter() - start
  assert len(stats) == _POOL.value and stats.ids[-1] == FIRST_ID + _POOL.value - 1
  result = {'pool': _POOL.value, 'processes': jax.process_count(), 'devices': jax.device_count(),
            'score_s': seconds, 'scoring_rss_mib': timing.peak_rss_mib(),
            'stats_mib': sum(v.nbytes for v in stats.columns.values()) / 2 ** 20,
            'platform': jax.devices()[0].platform}
  del stats
  if _SELECT.value:
    distributed.barrier('selection')
    result['select_s'], result['digest'] = time_selection(_POOL.value, _K.value, _EMBED.value)
    result['rss_mib'] = timing.peak_rss_mib()
  print('RESULT ' + json.dumps(result), flush=True)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_workers(pool: int, processes: int, select: bool) -> list[dict]:
  devices = max(1, mesh_lib.cpu_cores() // processes)
  port = free_port()
  common = [sys.executable, __file__, '--worker', f'--pool={pool}', f'--num_processes={processes}',
            f'--coordinator_address=127.0.0.1:{port}', f'--cpu_devices={devices}', f'--select={select}',
            f'--tile_size={_TILE.value}', f'--width={_WIDTH.value}', f'--depth={_DEPTH.value}',
            f'--batch_size={_BATCH.value}', f'--embed_dim={_EMBED.value}', f'--k={_K.value}',
            f'--stats={",".join(_STATS.value)}']
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join([os.path.dirname(os.path.dirname(__file__)),
                                                      os.environ.get('PYTHONPATH', '')])}
  procs = [subprocess.Popen(common + [f'--process_id={i}'], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(processes)]
  results = []
  for p in procs:
    out, err = p.communicate()
    if p.returncode:
      sys.exit(f'worker failed (pool {pool}, {processes} processes):\n{err[-3000:]}')
    results.append(json.loads(out.split('RESULT ')[-1]))
  return results


def main(argv) -> None:
  del argv
  if _WORKER.value:
    worker()
    return
  pools = [1000, 10000] if _QUICK.value else [int(p) for p in _POOLS.value]
  select_pool = _SELECT_POOL.value or max(pools)
  print(f'# {timing.machine_line()}; tiles {_TILE.value} px, U-Net width {_WIDTH.value} depth {_DEPTH.value}, '
        f'batch {_BATCH.value}, statistics {",".join(_STATS.value)}; selection: k={_K.value}, {LABELLED} labelled, {_EMBED.value}-d embeddings')
  rows = []
  for processes in [int(p) for p in _PROCESSES.value]:
    for pool in sorted(set(pools + [select_pool])):
      start = time.perf_counter()
      results = run_workers(pool, processes, select=pool == select_pool)
      rows.append(results)
      # Progress, not a figure: stderr, so that it stays out of the results block.
      print(f'  {processes} process(es), {pool:,} tiles: done in {time.perf_counter() - start:.0f} s',
            file=sys.stderr, flush=True)
  timing.print_table_head(['processes x devices', 'pool tiles', 'tiles/s', 'peak RSS / process (MiB)',
                           'statistics (MiB)'], 1)
  for results in rows:
    r = results[0]
    rss = max(x['scoring_rss_mib'] for x in results)
    seconds = max(x['score_s'] for x in results)
    print(f'| {r["processes"]} x {r["devices"] // r["processes"]} | {r["pool"]:,} | '
          f'{r["pool"] / seconds:,.0f} | {rss:,.0f} | {r["stats_mib"]:,.1f} |')
  timed = [results for results in rows if 'select_s' in results[0]]
  names = list(timed[0][0]['select_s'])
  columns = [f'{r[0]["processes"]} process(es): first / next (s)' for r in timed]
  timing.print_table_head([f'formula at {select_pool:,} tiles, k={_K.value}'] + columns, 1)
  for name in names:
    cells = []
    for results in timed:
      first = max(x['select_s'][name][0] for x in results)
      after = max(x['select_s'][name][1] for x in results)
      cells.append(f'{first:.2f} / {after:.2f}')
    print(f'| `{name}` | ' + ' | '.join(cells) + ' |')
  digests = {x['digest'] for results in timed for x in results}
  print(f'\nselection digests: {sorted(digests)} '
        f'({"the same picks on every process and process count" if len(digests) == 1 else "DIFFER"})')
  peak = {r[0]['processes']: max(x['rss_mib'] for x in r) for r in timed}
  print('peak RSS with selection: ' + ', '.join(f'{p} process(es) {m:,.0f} MiB' for p, m in peak.items()))
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(rows, f, indent=1)
  if len(digests) != 1:
    sys.exit('the processes picked different tiles')


if __name__ == '__main__':
  app.run(results_block.recorded(main))

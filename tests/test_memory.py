"""Scoring streams the pool: a process's peak memory does not grow with the
pool beyond the per-tile statistics themselves."""

import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env

# Scores pools of up to 200k tiles to measure peak memory.
pytestmark = pytest.mark.slow

# A fresh process per pool (a peak is a process's maximum so far): a tiny
# network on 24 px tiles made on read, scoring what iou_gain reads, so that
# pixels would dominate if the driver held them (200k tiles: 330 MiB of
# pixels, 9 MiB of statistics and ids).
SCRIPT = '''
import resource, sys
import jax
from priojax import mesh
mesh.use_cpu_devices()
from priojax.data.generated import GeneratedPool
from priojax.data.pool import TileSource
from priojax.models.heads import iou_head
from priojax.models.networks import Networks
from priojax.models.unet import UNet
from priojax.scoring import Scorer
from priojax.tile_stats import StatsSpec

n = int(sys.argv[1])
net = Networks(UNet(depth=2, width=2), iou_head(4), embed_dim=8)
params = jax.jit(net.init, static_argnums=1)(jax.random.key(0), 24)
scorer = Scorer(net, mesh.make_mesh(), batch_size=512, spec=StatsSpec.of(('pred_iou', 'embedding')))
stats = scorer.score(params, TileSource(GeneratedPool(n, 24), 'pool'))
assert len(stats) == n and stats.ids[-1] == n - 1
print('RSS_MIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
'''


def peak_rss_mib(tiles: int) -> float:
  result = subprocess.run([sys.executable, '-c', SCRIPT, str(tiles)], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return float(result.stdout.split('RSS_MIB')[-1])


def test_scoring_200k_tiles_peaks_within_1_2x_of_20k():
  small, large = peak_rss_mib(20_000), peak_rss_mib(200_000)
  assert large <= 1.2 * small, f'peak RSS {large:.0f} MiB for 200k tiles, {small:.0f} MiB for 20k'

"""Pool scoring and training sharded over 8 fake CPU devices give the same
numbers as one device. Runs in a subprocess: the device count is fixed when
jax is first imported."""

import os
import subprocess

import pytest
import sys
import textwrap

from conftest import ROOT, subprocess_env

# A subprocess with eight fake XLA devices.
pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    assert jax.device_count() == 8, jax.devices()
    from priojax import mesh as mesh_lib
    from priojax.data.pool import TileSource
    from priojax.models.heads import iou_head
    from priojax.models.unet import UNet
    from priojax.models.networks import Networks
    from priojax.scoring import Scorer
    from priojax.train import Trainer

    rng = np.random.default_rng(0)
    records = [{'id': np.int64(i), 'image': rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                'mask': (rng.random((16, 16)) > 0.6).astype(np.uint8)} for i in range(21)]
    net = Networks(UNet(depth=2, width=4), iou_head(8), embed_dim=8)
    params = net.init(jax.random.key(0), 16)
    mesh8, mesh1 = mesh_lib.make_mesh(), mesh_lib.make_mesh(jax.devices()[:1])
    s8 = Scorer(net, mesh8, batch_size=6)   # rounded up to 8: one tile per device
    assert s8.batch_size == 8
    a = s8.score(params, TileSource(records, 'pool'))
    b = Scorer(net, mesh1, batch_size=6).score(params, TileSource(records, 'pool'))
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.pred_iou, b.pred_iou, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-5, atol=1e-5)

    # The batch really is split over the devices.
    x = mesh_lib.shard_batch(mesh8, np.zeros((8, 16, 16, 3), np.uint8))
    assert len({s.device for s in x.addressable_shards}) == 8
    assert x.addressable_shards[0].data.shape == (1, 16, 16, 3)

    data = {'image': np.stack([r['image'] for r in records]), 'mask': np.stack([r['mask'] for r in records])}
    losses = []
    for m in (mesh8, mesh1):
      tr = Trainer(net, m)
      state, metrics = tr.fine_tune(tr.init_state(params), None, data, steps=3, batch_size=8,
                                    learning_rate=1e-3, replay=1.0, rng=jax.random.key(1))
      losses.append(metrics['loss_end'])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    print('SHARDED-OK')
''')


def test_scoring_and_training_on_eight_fake_devices():
  # The suite's XLA flags (-O2, see conftest.py) and eight devices.
  env = subprocess_env(XLA_FLAGS=f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=8",
                       JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'SHARDED-OK' in result.stdout


def test_the_launchers_split_the_cpu_into_one_device_per_core_unless_told():
  script = textwrap.dedent('''
      import sys, jax
      from priojax import mesh
      asked = mesh.use_cpu_devices(int(sys.argv[1]))
      print(asked, jax.device_count(), len(mesh.make_mesh().devices))
  ''')
  env = subprocess_env(JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  out = subprocess.run([sys.executable, '-c', script, '3'], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.stdout.split() == ['3', '3', '3'], out.stderr[-2000:]
  # A device count forced through XLA_FLAGS (as the sharding tests do) wins.
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=5'
  out = subprocess.run([sys.executable, '-c', script, '3'], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.stdout.split() == ['3', '5', '5'], out.stderr[-2000:]

r"""U-Net training throughput: priojax's jitted train step vs eager PyTorch.

    .venv/bin/pip install -e '.[bench]'      # torch==2.13.0, the CPU build
    .venv/bin/python benchmarks/train_step.py            # widths 8, 16, 32
    .venv/bin/python benchmarks/train_step.py --quick    # under 2 minutes

priojax: ``Trainer.seg_step``, the step every pretraining and fine-tuning
round runs (dihedral augmentation, BCE + soft Dice, gradient, global-norm
clipping, AdamW; one jitted function, the state donated). PyTorch: the same
U-Net with the same weights (copied from the Flax parameters; logits, loss
and gradient norm checked equal on one batch), the same augmentation, loss,
clipping and ``torch.optim.AdamW`` with the same hyper-parameters, eager, in
channels-last layout. Same batch, same tiles, same process; the two sides
take turns over ``--repeats`` windows of ``--steps`` steps after a warm-up,
and each reports its best window. The last line is the ratio at
``--report_width`` (the width the real-imagery configuration uses).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import results_block
import timing
from priojax import mesh as mesh_lib
from bench_models import describe, priojax_networks, torch_model
from priojax.models.unet import preprocess
from priojax.train import Trainer
from priojax.train_losses import segmentation_loss

_WIDTHS = flags.DEFINE_list('widths', ['8', '16', '32'], 'U-Net widths (decoder widths with --encoder) to time.')
_ENCODER = flags.DEFINE_enum('encoder', 'none', ['none', 'mobilenet_v2'],
                             "'none': the from-scratch U-Net; else the U-Net over that ImageNet encoder.")
_REPORT = flags.DEFINE_integer('report_width', 32, 'Width whose ratio is the last line.')
_DEPTH = flags.DEFINE_integer('depth', 3, 'U-Net depth.')
_TILE = flags.DEFINE_integer('tile_size', 64, 'Tile side in pixels.')
_BATCH = flags.DEFINE_integer('batch_size', 32, 'Training batch size.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Steps per timed window.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed windows per side (best is reported).')
_UPSAMPLE = flags.DEFINE_string('upsample', 'depth_to_space', 'priojax UNet.upsample.')
_QUICK = flags.DEFINE_bool('quick', False, 'Fewer, shorter windows: under 2 minutes.')
_TORCH = flags.DEFINE_bool('torch', True, 'Also time the eager PyTorch baseline.')
_CPU_DEVICES = flags.DEFINE_integer('cpu_devices', 0, 'XLA CPU devices (0: one per core).')
_PEAK = flags.DEFINE_float('peak_gflops', timing.REFERENCE_PEAK_GFLOPS, 'fp32 peak of this CPU.')

LEARNING_RATE, WEIGHT_DECAY, CLIP_NORM = 1e-3, 1e-4, 1.0


def make_batch(rng: np.random.Generator, n: int, size: int):
  images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
  masks = (rng.random((n, size, size)) > 0.7).astype(np.uint8)
  return images, masks


class PriojaxSide:
  def __init__(self, width: int):
    self.net, self.params = priojax_networks(_ENCODER.value, depth=_DEPTH.value, width=width,
                                             upsample=_UPSAMPLE.value, tile_size=_TILE.value)
    self.mesh = mesh_lib.make_mesh()
    self.trainer = Trainer(self.net, self.mesh, weight_decay=WEIGHT_DECAY, clip_norm=CLIP_NORM)
    self.state = self.trainer.init_state(self.params)
    self.key = jax.random.key(1)

  def place(self, images, masks):
    self.batch = mesh_lib.shard_batch(self.mesh, (images, masks))

  def flops(self) -> float:
    return timing.program_flops(self.trainer.seg_step, self.state, *self.batch, self.key,
                                np.float32(LEARNING_RATE))

  def run(self, steps: int) -> None:
    for _ in range(steps):
      self.state, metrics = self.trainer.seg_step(self.state, *self.batch, self.key,
                                                  np.float32(LEARNING_RATE))
    jax.block_until_ready((self.state, metrics))

  def loss_and_grad_norm(self, images, masks):
    def loss_fn(p):
      logits, _ = self.net.unet.apply({'params': p}, preprocess(images), train=False)
      return segmentation_loss(logits, masks), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(self.params['unet'])
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    return np.asarray(logits), float(loss), float(norm)


class TorchSide:
  def __init__(self, torch, params: dict):
    import torch_unet  # noqa: PLC0415

    self.torch, self.lib = torch, torch_unet
    self.model = torch_model(params['unet'], _ENCODER.value, depth=_DEPTH.value)
    self.model = self.model.train().to(memory_format=torch.channels_last)
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY,
                                 betas=(0.9, 0.999), eps=1e-8)
    self.generator = torch.Generator().manual_seed(0)

  def place(self, images, masks):
    self.x = self.lib.to_input(images)
    self.y = self.torch.from_numpy(masks)

  def run(self, steps: int) -> None:
    for _ in range(steps):
      x, y = self.lib.augment(self.x, self.y, self.generator)
      loss = self.lib.segmentation_loss(self.model(x)[0], y)
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_NORM)
      self.opt.step()
    float(loss)

  def loss_and_grad_norm(self, images, masks):
    model = self.model
    model.zero_grad(set_to_none=True)
    logits = model(self.lib.to_input(images))[0]
    loss = self.lib.segmentation_loss(logits, self.torch.from_numpy(masks))
    loss.backward()
    norm = self.torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    model.zero_grad(set_to_none=True)
    return logits.detach().numpy(), float(loss), float(norm)


def bench_width(width: int, torch, steps: int, repeats: int) -> dict:
  images, masks = make_batch(np.random.default_rng(width), _BATCH.value, _TILE.value)
  ours = PriojaxSide(width)
  row = {'width': width}
  theirs = TorchSide(torch, ours.params) if torch is not None else None
  if theirs is not None:  # same network: compared before either side trains
    a, b = ours.loss_and_grad_norm(images[:4], masks[:4]), theirs.loss_and_grad_norm(images[:4], masks[:4])
    row['logits_diff'] = float(np.abs(a[0] - b[0]).max())
    row['loss_rel'] = abs(a[1] - b[1]) / abs(b[1])
    row['grad_norm_rel'] = abs(a[2] - b[2]) / abs(b[2])
  sides = {'priojax': ours}
  if theirs is not None:
    sides['pytorch'] = theirs
  for side in sides.values():
    side.place(images, masks)
    side.run(2)  # compile / warm-up
  flops = ours.flops()
  best = timing.interleaved_best({n: (lambda s=s: s.run(steps)) for n, s in sides.items()}, repeats)
  for name, seconds in best.items():
    row[name] = steps * _BATCH.value / seconds
  row['gflops'] = flops * steps / best['priojax'] / 1e9
  return row


def main(argv):
  del argv
  steps, repeats = (2, 2) if _QUICK.value else (_STEPS.value, _REPEATS.value)
  mesh_lib.use_cpu_devices(_CPU_DEVICES.value)
  torch = timing.torch_or_none() if _TORCH.value else None
  print(timing.machine_line())
  if torch is not None:
    print(f'torch {torch.__version__}, {torch.get_num_threads()} intra-op threads')
  print(f'{describe(_ENCODER.value, _DEPTH.value)}, {_TILE.value} px tiles, batch {_BATCH.value}, upsample '
        f'{_UPSAMPLE.value}; best of {repeats} windows of {steps} steps per side, taking turns')
  rows = [bench_width(int(w), torch, steps, repeats) for w in _WIDTHS.value]
  timing.print_table_head(['width', 'priojax train tiles/s', 'PyTorch train tiles/s', 'priojax/PyTorch',
                           'priojax GFLOP/s (% of peak)', 'max abs logits diff',
                           'loss, grad-norm rel. diff'])
  for r in rows:
    pt = r.get('pytorch')
    print(f"| {r['width']} | {r['priojax']:.1f} | {timing.cell(pt, '.1f')} | {timing.ratio(r['priojax'], pt)} | "
          f"{r['gflops']:.1f} ({100 * r['gflops'] / _PEAK.value:.0f} %) | "
          f"{r.get('logits_diff', float('nan')):.1e} | "
          f"{r.get('loss_rel', float('nan')):.1e}, {r.get('grad_norm_rel', float('nan')):.1e} |")
  report = [r for r in rows if r['width'] == _REPORT.value and r.get('pytorch')]
  if report:
    print(f"training priojax/pytorch = {report[0]['priojax'] / report[0]['pytorch']:.2f}")


if __name__ == '__main__':
  app.run(results_block.recorded(main))

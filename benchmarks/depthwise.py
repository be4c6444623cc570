r"""Depthwise 3x3 convolutions on XLA:CPU: grouped convolution vs shifted slices.

    .venv/bin/python benchmarks/depthwise.py               # 128 px chips, batch 4
    .venv/bin/python benchmarks/depthwise.py --tile_size=64 --batch_size=16

MobileNetV2 is mostly depthwise convolutions by count of layers, and XLA:CPU
runs ``lax.conv_general_dilated(..., feature_group_count=C)`` on a generic
kernel. For every depthwise layer of MobileNetV2 at the given chip size,
this times the forward pass and the gradient (input and kernel) of three
forms of the same function, in one process, taking turns: XLA's grouped
convolution, priojax's ``mobilenet_v2.depthwise_conv`` (nine shifted,
strided slices times one tap each, which XLA fuses into one loop) and,
with the bench extra, PyTorch's grouped ``Conv2d`` (channels-last, eager).
The outputs are checked equal first. The last line is the summed ratio
over the encoder's depthwise layers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import results_block
import timing
from priojax import mesh as mesh_lib
from priojax.models import mobilenet_v2

_TILE = flags.DEFINE_integer('tile_size', 128, 'Chip side in pixels.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Batch size.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per form (best is reported).')
_TORCH = flags.DEFINE_bool('torch', True, 'Also time PyTorch.')


def depthwise_layers(size: int) -> list[tuple[int, int, int]]:
  """(input side, channels, stride) of each depthwise layer of MobileNetV2."""
  layers, side, c_in = [], size // 2, mobilenet_v2.STEM
  for t, c, n, s in mobilenet_v2.SETTINGS:
    for i in range(n):
      stride = s if i == 0 else 1
      layers.append((side, c_in * t, stride))
      side //= stride
      c_in = c
  return layers


def lax_depthwise(x, k, stride):
  return jax.lax.conv_general_dilated(x, k, (stride, stride), ((1, 1), (1, 1)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=x.shape[-1])


def forms(stride: int) -> dict:
  out = {}
  for name, fn in (('xla_grouped', lax_depthwise), ('slices', mobilenet_v2.depthwise_conv)):
    fwd = jax.jit(lambda x, k, fn=fn: fn(x, k, stride))
    grad = jax.jit(jax.grad(lambda x, k, fn=fn: jnp.sum(fn(x, k, stride) ** 2), argnums=(0, 1)))
    out[name] = (fwd, grad)
  return out


def main(argv):
  del argv
  mesh_lib.use_cpu_devices(1)  # one layer, one device: what each device runs
  torch = timing.torch_or_none() if _TORCH.value else None
  print(timing.machine_line())
  print(f'MobileNetV2 depthwise layers at {_TILE.value} px, batch {_BATCH.value}; best of {_REPEATS.value} '
        'calls per form, taking turns; ms per call')
  rng = np.random.default_rng(0)
  totals: dict[str, float] = {}
  timing.print_table_head(['input', 'channels', 'stride', 'XLA grouped fwd', 'slices fwd', 'PyTorch fwd',
                           'XLA grouped fwd+grad', 'slices fwd+grad', 'PyTorch fwd+grad'])
  for side, c, stride in depthwise_layers(_TILE.value):
    x = jnp.asarray(rng.normal(size=(_BATCH.value, side, side, c)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 1, c)), jnp.float32)
    fns = forms(stride)
    np.testing.assert_allclose(fns['slices'][0](x, k), fns['xla_grouped'][0](x, k), atol=1e-3, rtol=1e-4)
    sides = {}
    for name, (fwd, grad) in fns.items():
      sides[f'{name}_fwd'] = lambda f=fwd: jax.block_until_ready(f(x, k))
      sides[f'{name}_grad'] = lambda g=grad: jax.block_until_ready(g(x, k))
    if torch is not None:
      conv = torch.nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False).to(memory_format=torch.channels_last)
      conv.weight.data = torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy())
      tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).contiguous(
          memory_format=torch.channels_last)
      np.testing.assert_allclose(conv(tx).detach().numpy().transpose(0, 2, 3, 1), fns['slices'][0](x, k),
                                 atol=1e-3, rtol=1e-4)

      def torch_fwd():
        with torch.no_grad():
          conv(tx)

      def torch_grad():
        xg = tx.detach().requires_grad_(True)
        (conv(xg) ** 2).sum().backward()

      sides['torch_fwd'], sides['torch_grad'] = torch_fwd, torch_grad
    for fn in sides.values():
      fn()  # compile / warm-up
    best = timing.interleaved_best(sides, _REPEATS.value)
    for name, seconds in best.items():
      totals[name] = totals.get(name, 0.0) + seconds
    ms = {n: 1e3 * t for n, t in best.items()}
    print(f"| {side} | {c} | {stride} | {ms['xla_grouped_fwd']:.2f} | {ms['slices_fwd']:.2f} | "
          f"{timing.cell(ms.get('torch_fwd'), '.2f')} | {ms['xla_grouped_grad']:.2f} | {ms['slices_grad']:.2f} | "
          f"{timing.cell(ms.get('torch_grad'), '.2f')} |")
  t = {n: 1e3 * v for n, v in totals.items()}
  print(f"| all | | | {t['xla_grouped_fwd']:.1f} | {t['slices_fwd']:.1f} | {timing.cell(t.get('torch_fwd'), '.1f')} | "
        f"{t['xla_grouped_grad']:.1f} | {t['slices_grad']:.1f} | {timing.cell(t.get('torch_grad'), '.1f')} |")
  print(f"depthwise slices/XLA grouped speed-up: forward {totals['xla_grouped_fwd'] / totals['slices_fwd']:.1f}x, "
        f"forward+gradient {totals['xla_grouped_grad'] / totals['slices_grad']:.1f}x"
        + (f"; slices vs PyTorch forward+gradient {totals['torch_grad'] / totals['slices_grad']:.2f}x"
           if 'torch_grad' in totals else ''))


if __name__ == '__main__':
  app.run(results_block.recorded(main))

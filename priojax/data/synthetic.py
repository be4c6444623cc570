"""Procedural aerial-like scenes with building footprints: the synthetic benchmark.

Two regions with a real domain shift:

* ``source``: temperate scenes (green/brown ground, tiled roofs of medium
  buildings), the region a model is pretrained on;
* ``target``: an arid crisis region seen by another sensor (colour cast,
  more noise) whose tiles fall into sub-populations of different difficulty:

  - ``like_source``: buildings of the source style on target ground (easy);
  - ``informal``: dense small metal roofs of an informal settlement (a new
    style: learnable from a few labels);
  - ``damaged``: broken roofs and rubble fields that look like buildings
    (hard, partly learnable);
  - ``haze``: smoke or cloud over the scene; buildings are barely visible,
    so much of this sub-population cannot be learnt (a good priority formula
    should not spend its budget here);
  - ``empty``: no buildings, only ground, roads and rocks.

Everything is a deterministic function of ``(seed, split, index)`` so that a
tile can be regenerated anywhere, in any order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SUBPOPULATIONS = ('source', 'like_source', 'informal', 'damaged', 'haze', 'empty')
TARGET_MIX = {'like_source': 0.25, 'informal': 0.22, 'damaged': 0.2, 'haze': 0.15, 'empty': 0.18}
SOURCE_MIX = {'source': 0.85, 'empty': 0.15}
SPLIT_CODES = {'source_train': 0, 'source_val': 1, 'target_pool': 2, 'target_test': 3}

_SOURCE_ROOFS = np.array([[0.62, 0.27, 0.2], [0.5, 0.5, 0.52], [0.42, 0.3, 0.24], [0.7, 0.45, 0.35]])
_METAL_ROOFS = np.array([[0.78, 0.82, 0.86], [0.68, 0.74, 0.8], [0.58, 0.4, 0.3], [0.45, 0.6, 0.7]])


@dataclasses.dataclass(frozen=True)
class Tile:
  image: np.ndarray  # [S, S, 3] uint8
  mask: np.ndarray  # [S, S] uint8 in {0, 1}
  subpopulation: str


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
  """Value noise in [0, 1]: a coarse random grid bilinearly upsampled."""
  grid = rng.random((cells + 1, cells + 1))
  coords = np.linspace(0, cells, size, endpoint=False)
  i0 = np.floor(coords).astype(int)
  f = coords - i0
  f = f * f * (3 - 2 * f)
  rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
  return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _ground(rng: np.random.Generator, size: int, region: str) -> np.ndarray:
  mix = _smooth_noise(rng, size, max(2, size // 16))
  detail = _smooth_noise(rng, size, max(4, size // 4))
  if region == 'source':
    a, b = np.array([0.24, 0.42, 0.2]), np.array([0.46, 0.4, 0.28])
  else:
    a, b = np.array([0.7, 0.6, 0.44]), np.array([0.52, 0.44, 0.34])
  img = a * mix[..., None] + b * (1 - mix[..., None])
  return img * (0.85 + 0.3 * detail[..., None])


def _roads(rng: np.random.Generator, img: np.ndarray) -> None:
  size = img.shape[0]
  for _ in range(rng.integers(0, 3)):
    width = int(rng.integers(2, 4))
    pos = int(rng.integers(0, size - width))
    color = np.array([0.36, 0.36, 0.38]) + rng.normal(0, 0.03)
    if rng.random() < 0.5:
      img[pos:pos + width, :] = color
    else:
      img[:, pos:pos + width] = color


def _place_rects(rng, size, count, lo, hi, gap, occupied):
  """Non-overlapping axis-aligned rectangles; returns (y, x, h, w) tuples."""
  rects = []
  for _ in range(count * 6):
    if len(rects) == count:
      break
    h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    y, x = (int(v) for v in rng.integers(1, max(2, size - max(h, w) - 1), size=2))
    if y + h >= size or x + w >= size:
      continue
    if occupied[max(0, y - gap):y + h + gap, max(0, x - gap):x + w + gap].any():
      continue
    occupied[y:y + h, x:x + w] = True
    rects.append((y, x, h, w))
  return rects


def _buildings(rng, img, mask, palette, count, lo, hi, gap, shadow):
  occupied = np.zeros(mask.shape, bool)
  rects = _place_rects(rng, img.shape[0], count, lo, hi, gap, occupied)
  for y, x, h, w in rects:
    if shadow:
      img[y + 1:y + h + 2, x + 1:x + w + 2] *= 0.55
    roof = palette[rng.integers(len(palette))] + rng.normal(0, 0.04, 3)
    img[y:y + h, x:x + w] = roof
    if min(h, w) >= 6:  # a ridge line, as on pitched roofs
      if h > w:
        img[y:y + h, x + w // 2] = roof * 0.8
      else:
        img[y + h // 2, x:x + w] = roof * 0.8
    mask[y:y + h, x:x + w] = 1
  return rects


def _rubble(rng, img, count, size_lo, size_hi):
  size = img.shape[0]
  for _ in range(count):
    r = int(rng.integers(size_lo, size_hi + 1))
    cy, cx = rng.integers(0, size, size=2)
    yy, xx = np.ogrid[:size, :size]
    blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r * (0.5 + rng.random((size, size)))
    shade = rng.uniform(0.45, 0.75) + rng.normal(0, 0.08, (size, size))
    img[blob] = (np.array([1.0, 0.95, 0.88]) * shade[..., None])[blob]


def _scene(rng: np.random.Generator, size: int, region: str, subpop: str) -> Tile:
  img = _ground(rng, size, region)
  _roads(rng, img)
  mask = np.zeros((size, size), np.uint8)
  scale = size / 64.0
  big_lo, big_hi = max(3, int(7 * scale)), max(4, int(15 * scale))
  if subpop in ('source', 'like_source'):
    _buildings(rng, img, mask, _SOURCE_ROOFS, int(rng.integers(2, 7)), big_lo, big_hi, 2, True)
  elif subpop == 'informal':
    n = int(rng.integers(14, 34) * scale * scale) + 4
    _buildings(rng, img, mask, _METAL_ROOFS, n, max(2, int(3 * scale)), max(3, int(6 * scale)), 1, False)
  elif subpop == 'damaged':
    rects = _buildings(rng, img, mask, _SOURCE_ROOFS, int(rng.integers(2, 6)), big_lo, big_hi, 2, True)
    for y, x, h, w in rects:  # collapsed parts: roof pixels replaced by debris
      holes = rng.random((h, w)) < rng.uniform(0.2, 0.5)
      img[y:y + h, x:x + w][holes] = rng.uniform(0.4, 0.7)
    _rubble(rng, img, int(rng.integers(2, 6)), max(2, int(3 * scale)), max(3, int(6 * scale)))
  elif subpop == 'haze':
    palette = _SOURCE_ROOFS if rng.random() < 0.6 else _METAL_ROOFS
    _buildings(rng, img, mask, palette, int(rng.integers(3, 9)), max(2, int(4 * scale)), big_hi, 1, True)
    alpha = 0.75 + 0.25 * _smooth_noise(rng, size, max(2, size // 16))
    haze = np.array([0.86, 0.86, 0.88]) + rng.normal(0, 0.06, (size, size, 1))
    img = img * (1 - alpha[..., None]) + haze * alpha[..., None]
  elif subpop == 'empty':
    _rubble(rng, img, int(rng.integers(0, 3)), 1, max(2, int(3 * scale)))
  else:
    raise ValueError(f'unknown sub-population {subpop!r}; expected one of {SUBPOPULATIONS}')
  if region == 'target':  # another sensor: a colour cast and more noise
    img = img * np.array([1.08, 1.0, 0.9]) + 0.03
    img = img + rng.normal(0, 0.035, img.shape)
  else:
    img = img + rng.normal(0, 0.02, img.shape)
  image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
  return Tile(image=image, mask=mask, subpopulation=subpop)


def _draw_subpopulation(rng: np.random.Generator, mix: dict[str, float]) -> str:
  names = list(mix)
  probs = np.array([mix[n] for n in names])
  return names[int(rng.choice(len(names), p=probs / probs.sum()))]


def make_tile(seed: int, split: str, index: int, size: int) -> Tile:
  """The tile ``index`` of ``split``: a pure function of its arguments."""
  if split not in SPLIT_CODES:
    raise ValueError(f'unknown split {split!r}; expected one of {tuple(SPLIT_CODES)}')
  rng = np.random.default_rng([seed, SPLIT_CODES[split], index, size])
  region = 'source' if split.startswith('source') else 'target'
  subpop = _draw_subpopulation(rng, SOURCE_MIX if region == 'source' else TARGET_MIX)
  return _scene(rng, size, region, subpop)

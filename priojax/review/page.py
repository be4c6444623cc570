"""``review.html``: one self-contained page per run, rewritten each round.

The page is a template with everything inline: Leaflet's script and style
(its two control icons as data URIs), the page's own script and style,
the learning curve as a PNG data URI and the round's picture
(round_view.py) with the metrics history as one JSON block, which the
script draws. Nothing is fetched: it opens from a USB stick with the
network off.

The round's picture is kept beside it (``review/round.json``) so that the
page can be rewritten with the new learning-curve point once the round
commits, and after a resume, without recomputing anything.
"""

from __future__ import annotations

import functools
import html
import json
import pathlib
import re

from priojax import report
from priojax.atomic_io import atomic_write_json, atomic_write_text
from priojax.review.round_view import data_uri

ASSETS = pathlib.Path(__file__).parent / 'assets'
PAGE = 'review.html'
VIEW = pathlib.Path('review') / 'round.json'

# The metrics the page's tables show, by round (missing ones read '-').
HISTORY_KEYS = ('round', 'labels', 'iou', 'f1', 'mean_tile_iou', 'head_spearman', 'head_mae',
                'picked_with_buildings', 'round_seconds')


@functools.cache
def _leaflet_css() -> str:
  css = (ASSETS / 'leaflet' / 'leaflet.css').read_text()
  for name in ('layers.png', 'layers-2x.png'):
    css = css.replace(f'url(images/{name})', f'url({data_uri((ASSETS / "leaflet" / "images" / name).read_bytes())})')
  return css.replace('url(images/marker-icon.png)', 'none')  # no markers: nothing to fetch


def _script(text: str) -> str:
  return text.replace('</script', '<\\/script')


def curve_png(history: list[dict], title: str) -> str:
  """The learning curve and head quality as a PNG data URI (the same plot
  as the workdir's learning_curve.png)."""
  return data_uri(report.learning_curve_png(history, title))


def history_rows(history: list[dict]) -> list[dict]:
  rows = []
  for record in history:
    row = {k: record.get(k) for k in HISTORY_KEYS}
    row['picked'] = {k.removeprefix('picked/'): v for k, v in record.items() if k.startswith('picked/')}
    rows.append(row)
  return rows


def render(view: dict | None, history: list[dict], *, title: str, config_line: str, curve: str | None = None) -> str:
  """The page; ``curve``: the learning curve's PNG data URI, drawn from
  ``history`` when not given."""
  data = {'title': title, 'config': config_line, 'history': history_rows(history), 'view': view,
          'curve': curve or (curve_png(history, title) if history else None)}
  shown = f'round {view["round"]}' if view else f'round {history[-1]["round"] if history else 0}'
  block = json.dumps(data, separators=(',', ':'), allow_nan=False).replace('</', '<\\/')
  template = (ASSETS / 'review.html').read_text()
  parts = {
      '{{TITLE}}': html.escape(f'priojax review · {title} · {shown}'),
      '{{LEAFLET_CSS}}': _leaflet_css(),
      '{{REVIEW_CSS}}': (ASSETS / 'review.css').read_text(),
      '{{LEAFLET_JS}}': _script((ASSETS / 'leaflet' / 'leaflet.js').read_text()),
      '{{DATA}}': block,
      '{{REVIEW_JS}}': _script((ASSETS / 'review.js').read_text()),
  }
  return re.sub('|'.join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], template)


def save_view(workdir: pathlib.Path, view: dict) -> None:
  (workdir / VIEW).parent.mkdir(exist_ok=True)
  atomic_write_json(workdir / VIEW, view)


def load_view(workdir: pathlib.Path) -> dict | None:
  path = workdir / VIEW
  return json.loads(path.read_text()) if path.exists() else None


def read_data(path: pathlib.Path) -> dict:
  """The JSON block of a written page (what its script draws)."""
  block = re.search(r'<script id="review-data" type="application/json">(.*?)</script>', path.read_text(), re.S)
  return json.loads(block.group(1))


def write(workdir: pathlib.Path, history: list[dict], *, title: str, config_line: str,
          curve_file: pathlib.Path | None = None) -> pathlib.Path:
  """Writes ``review.html`` from the kept round picture and ``history``;
  ``curve_file``: the run's learning_curve.png when it shows ``history``
  (inlined as it is rather than drawn again)."""
  path = workdir / PAGE
  curve = data_uri(curve_file.read_bytes()) if curve_file is not None and curve_file.exists() else None
  atomic_write_text(path, render(load_view(workdir), history, title=title, config_line=config_line, curve=curve))
  return path

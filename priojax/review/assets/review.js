// Draws priojax's round review page from the JSON block #review-data
// (written by priojax/review/page.py). Plain ES2017 and Leaflet 1.9: no
// build step, nothing fetched.
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('review-data').textContent);
  const view = data.view;
  const ROUND_COLOURS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#46f0f0', '#f032e6',
                         '#bcf60c', '#fabebe', '#008080', '#e6beff', '#9a6324'];
  const roundColour = (r) => ROUND_COLOURS[(r - 1) % ROUND_COLOURS.length];
  const fmt = (v, digits) => (v === null || v === undefined) ? '-' :
      (typeof v === 'number' && digits !== undefined ? v.toFixed(digits) : String(v));

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function table(columns, rows, opts) {
    const thead = el('thead', {}, [el('tr', {}, columns.map((c) => el('th', {text: c.title})))]);
    const tbody = el('tbody');
    const t = el('table', opts && opts.id ? {id: opts.id} : {}, [thead, tbody]);
    const fill = (list) => {
      tbody.textContent = '';
      list.forEach((row) => {
        const tr = el('tr', opts && opts.rowClass ? {class: opts.rowClass} : {});
        columns.forEach((c) => tr.appendChild(c.cell ? c.cell(row) : el('td', {text: fmt(c.value(row), c.digits)})));
        if (opts && opts.onRow) tr.addEventListener('click', () => opts.onRow(row));
        tbody.appendChild(tr);
      });
    };
    fill(rows);
    if (opts && opts.sortable) {  // click a header: ascending, again: descending
      let current = null, ascending = true;
      Array.from(thead.querySelectorAll('th')).forEach((th, i) => {
        if (!columns[i].value) return;
        th.classList.add('sortable');
        th.addEventListener('click', () => {
          ascending = current === i ? !ascending : true;
          current = i;
          thead.querySelectorAll('th').forEach((h) => h.classList.remove('sorted-asc', 'sorted-desc'));
          th.classList.add(ascending ? 'sorted-asc' : 'sorted-desc');
          const key = columns[i].value;
          fill(rows.slice().sort((a, b) => {
            const x = key(a), y = key(b);
            const d = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
            return ascending ? d : -d;
          }));
        });
      });
    }
    return t;
  }

  // Header: which run, round and config this page shows.
  const header = document.getElementById('header');
  const round = view ? view.round : (data.history.length ? data.history[data.history.length - 1].round : 0);
  header.appendChild(el('h1', {text: `priojax review · ${data.title} · round ${round}`}));
  header.appendChild(el('p', {text: data.config}));
  if (view) {
    header.appendChild(el('p', {text: `${view.picks_total} tiles selected this round by ${view.formula} ` +
                                      `from a pool of ${view.pool_tiles}.`}));
  }

  // Learning curve and head quality by round.
  const progress = document.getElementById('progress');
  if (data.curve) progress.appendChild(el('img', {class: 'curve', src: data.curve, alt: 'learning curve'}));
  progress.appendChild(table([
    {title: 'round', value: (r) => r.round}, {title: 'labels', value: (r) => r.labels},
    {title: 'test IoU', value: (r) => r.iou, digits: 3}, {title: 'F1', value: (r) => r.f1, digits: 3},
    {title: 'mean tile IoU', value: (r) => r.mean_tile_iou, digits: 3},
    {title: 'head Spearman', value: (r) => r.head_spearman, digits: 3},
    {title: 'head MAE', value: (r) => r.head_mae, digits: 3},
    {title: 'picks with buildings', value: (r) => r.picked_with_buildings},
    {title: 'round time (s)', value: (r) => r.round_seconds, digits: 0},
  ], data.history, {id: 'rounds-table'}));

  // Picks per sub-population (or scene), by round.
  const strata = Array.from(new Set(data.history.flatMap((r) => Object.keys(r.picked)))).sort();
  const strataSection = document.getElementById('strata');
  if (strata.length) {
    strataSection.appendChild(el('h2', {text: 'Labelled tiles per ' + (view && view.scenes.length ? 'scene' : 'sub-population') + ', by round'}));
    const picked = data.history.filter((r) => Object.keys(r.picked).length);
    strataSection.appendChild(table([{title: 'round', value: (r) => r.round},
                                     ...strata.map((s) => ({title: s, value: (r) => r.picked[s] || 0}))],
                                    picked, {id: 'strata-table'}));
  } else {
    strataSection.remove();
  }

  // One zoomable map per scene: image, heat map, predictions, labels, chips.
  const maps = {};
  const scenesSection = document.getElementById('scenes');
  if (view && view.scenes.length) {
    scenesSection.appendChild(el('h2', {text: 'Where the model wants labels'}));
    const legend = el('p', {class: 'legend'});
    legend.innerHTML = 'Heat map: ' + view.heat_label.replace(/[<>&]/g, '') + ' (bright = labelled first).' +
        '<span class="swatch" style="background:#ff8c00"></span>predicted buildings' +
        '<span class="swatch" style="background:#00dcff"></span>labelled buildings' +
        ROUND_COLOURS.slice(0, Math.max(1, round)).map((c, i) =>
            `<span class="swatch" style="border:2px solid ${c}"></span>round ${i + 1}`).join('');
    scenesSection.appendChild(legend);
    view.scenes.forEach((scene, i) => {
      scenesSection.appendChild(el('h3', {text: `${scene.name} · ${scene.width} × ${scene.height} px · ` +
          `${scene.pool_chips} pool chips · predictions on ${scene.predicted_chips}` +
          (scene.georeferenced ? '' : ' · not georeferenced (scene pixels)')}));
      const div = el('div', {class: 'scene-map', id: `map-${i}`, 'data-scene': scene.name});
      scenesSection.appendChild(div);
      const map = L.map(div, {crs: L.CRS.Simple, minZoom: -6, maxZoom: 6, zoomSnap: 0.25,
                              attributionControl: false});
      // Scene pixels (row, col) -> Leaflet's (lat, lng) = (-row, col).
      const box = (row, col, h, w) => [[-(row + h), col], [-row, col + w]];
      const bounds = box(0, 0, scene.height, scene.width);
      const image = L.imageOverlay(scene.image, bounds, {className: 'layer-image'}).addTo(map);
      const overlays = {};
      overlays['priority heat map'] = L.imageOverlay(
          scene.heat, box(0, 0, scene.heat_extent[0], scene.heat_extent[1]),
          {className: 'layer-heat', opacity: 0.55}).addTo(map);
      overlays['predicted buildings'] = L.imageOverlay(scene.prediction, bounds,
                                                       {className: 'layer-prediction'}).addTo(map);
      if (scene.truth) {
        overlays['labelled buildings'] = L.imageOverlay(scene.truth, bounds, {className: 'layer-truth'});
      }
      const current = L.layerGroup(), earlier = L.layerGroup();
      scene.chips.forEach((c) => {
        const now = c.round === view.round;
        const rect = L.rectangle(box(...c.window), {
          color: roundColour(c.round), weight: now ? 3 : 1.5, fill: now, fillOpacity: 0.08,
          className: `chip chip-round-${c.round} chip-id-${c.id} ${now ? 'chip-current' : 'chip-earlier'}`});
        rect.bindTooltip(`chip ${c.id} · round ${c.round}`);
        (now ? current : earlier).addLayer(rect);
      });
      overlays[`picked this round (${view.round})`] = current.addTo(map);
      overlays['picked earlier'] = earlier.addTo(map);
      L.control.layers({'scene image': image}, overlays, {collapsed: false}).addTo(map);
      map.fitBounds(bounds);
      maps[scene.name] = {map, box};
    });
    if (view.scenes_left_out) {
      scenesSection.appendChild(el('p', {class: 'note', text: `${view.scenes_left_out} more pool scenes with ` +
          'fewer picks this round are not shown (review.max_scenes).'}));
    }
  } else {
    scenesSection.remove();
  }

  // This round's picks, sortable; a row zooms its scene's map to the chip.
  const picksSection = document.getElementById('picks');
  if (view) {
    picksSection.appendChild(el('h2', {text: `This round's picks (round ${view.round})`}));
    const hasScenes = view.picks.some((p) => p.scene !== undefined);
    const columns = [
      {title: 'rank', value: (p) => p.rank}, {title: 'id', value: (p) => p.id},
      {title: 'chip', cell: (p) => el('td', {class: 'thumb'}, [el('img', {src: p.thumbnail, alt: `chip ${p.id}`})])},
      {title: 'priority', value: (p) => p.priority, digits: 4},
      {title: 'predicted IoU', value: (p) => p.pred_iou, digits: 3},
      {title: hasScenes ? 'scene' : 'sub-population', value: (p) => p.stratum},
    ];
    if (hasScenes) columns.push({title: 'window (row, col, h, w)', value: (p) => p.window.join(', ')});
    picksSection.appendChild(table(columns, view.picks, {
      id: 'picks-table', sortable: true, rowClass: 'pick-row',
      onRow: (p) => {
        const m = p.scene !== undefined && maps[p.scene];
        if (m) {
          m.map.fitBounds(m.box(...p.window), {maxZoom: 3});
          m.map.getContainer().scrollIntoView({behavior: 'smooth', block: 'center'});
        }
      }}));
    if (view.picks.length < view.picks_total) {
      picksSection.appendChild(el('p', {class: 'note', text: `The top ${view.picks.length} of ` +
          `${view.picks_total} picks (review.max_rows); every pick is in selected_round_${view.round}.json.`}));
    }
  } else {
    picksSection.appendChild(el('p', {class: 'note', text: 'No round has selected tiles yet.'}));
  }
  window.priojaxReview = {data, maps};
})();

const DATA = JSON.parse(document.getElementById('data').textContent);
const NS = 'http://www.w3.org/2000/svg';
const COLORS = ['#1f77b4','#d62728','#2ca02c','#ff7f0e','#9467bd','#8c564b','#17becf'];
function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function frame(id, w, h) {
  const svg = el('svg', {width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: 'chart'});
  document.getElementById(id).appendChild(svg);
  return svg;
}
function lines(id, rows, xKey, yKey, groupKey, xLabel, yLabel) {
  const w = 760, h = 300, m = {l: 60, r: 120, t: 26, b: 40};
  const svg = frame(id, w, h);
  if (!rows.length) { el('text', {x: 20, y: 40}, svg).textContent = 'no data'; return; }
  const xs = rows.map(r => +r[xKey]), ys = rows.map(r => +r[yKey]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y1 = Math.max(...ys) || 1;
  const X = v => m.l + (x1 === x0 ? 0 : (v - x0) / (x1 - x0)) * (w - m.l - m.r);
  const Y = v => h - m.b - (v / y1) * (h - m.t - m.b);
  el('line', {x1: m.l, y1: h - m.b, x2: w - m.r, y2: h - m.b, stroke: '#444'}, svg);
  el('line', {x1: m.l, y1: m.t, x2: m.l, y2: h - m.b, stroke: '#444'}, svg);
  el('text', {x: (w - m.r) / 2, y: h - 8, 'text-anchor': 'middle'}, svg).textContent = xLabel;
  el('text', {x: m.l, y: 14}, svg).textContent = yLabel;
  el('text', {x: m.l - 6, y: m.t + 4, 'text-anchor': 'end', class: 'tick'}, svg).textContent = y1.toFixed(1);
  el('text', {x: m.l - 6, y: h - m.b, 'text-anchor': 'end', class: 'tick'}, svg).textContent = '0';
  const groups = [...new Set(rows.map(r => r[groupKey]))];
  groups.forEach((g, i) => {
    const pts = rows.filter(r => r[groupKey] === g).sort((a, b) => a[xKey] - b[xKey]);
    const d = pts.map((r, j) => `${j ? 'L' : 'M'}${X(+r[xKey]).toFixed(1)},${Y(+r[yKey]).toFixed(1)}`).join('');
    el('path', {d, fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 2, class: 'series'}, svg);
    el('text', {x: w - m.r + 8, y: m.t + 16 + i * 16, fill: COLORS[i % COLORS.length]}, svg).textContent = g;
  });
}
function bars(id, rows) {
  const w = 760, rowH = 18, m = {l: 170, r: 80};
  const h = Math.max(40, rows.length * rowH + 20);
  const svg = frame(id, w, h);
  if (!rows.length) { el('text', {x: 20, y: 30}, svg).textContent = 'no data'; return; }
  const max = Math.max(...rows.map(r => +r.kwh)) || 1;
  rows.forEach((r, i) => {
    const y = 10 + i * rowH, len = (+r.kwh / max) * (w - m.l - m.r);
    el('text', {x: m.l - 6, y: y + 12, 'text-anchor': 'end'}, svg).textContent = `${r.city} ${r.zone}`;
    el('rect', {x: m.l, y, width: Math.max(1, len), height: rowH - 4, fill: '#1f77b4', class: 'bar'}, svg);
    el('text', {x: m.l + len + 4, y: y + 12}, svg).textContent = `${(+r.kwh).toFixed(0)} kWh`;
  });
}
lines('profile', DATA.load_profile, 'hour_utc', 'avg_kwh', 'city', 'hour of day (UTC)', 'kWh per hour');
bars('zones', DATA.zones);
lines('air', DATA.air_quality.map(r => ({...r, t: Date.parse(r.hour) / 3600000})), 't', 'no2', 'city',
      'time (hours)', 'NO2 µg/m³');
document.body.setAttribute('data-charts-drawn', document.querySelectorAll('svg.chart').length);

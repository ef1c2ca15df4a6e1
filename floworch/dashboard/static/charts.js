// Two small SVG charts: vertical bars over time and horizontal bars by label.

import {duration, h, s} from './dom.js';

/** Runs per hour: [{hour, count}] as vertical bars. */
export function timeBars(points, {label, hours}) {
  const width = 520;
  const height = 140;
  const now = Date.now();
  const start = now - hours * 3600e3;
  const slots = Math.max(1, Math.ceil(hours));
  const counts = new Array(slots).fill(0);
  for (const p of points) {
    const at = new Date(p.hour).getTime();
    const i = Math.min(slots - 1, Math.max(0, Math.floor((at - start) / 3600e3)));
    counts[i] += p.count;
  }
  const max = Math.max(1, ...counts);
  const bar = width / slots;
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${width} ${height + 18}`, role: 'img', 'aria-label': label});
  counts.forEach((count, i) => {
    const bh = (count / max) * height;
    svg.append(
      s('rect', {x: i * bar + 1, y: height - bh, width: Math.max(1, bar - 2), height: bh, class: 'bar'},
        s('title', {}, `${count} run(s) in hour ${i + 1} of ${slots}`)),
    );
  });
  svg.append(
    s('text', {x: 0, y: height + 14, class: 'axis'}, new Date(start).toLocaleString(undefined, {month: 'short', day: 'numeric', hour: '2-digit'})),
    s('text', {x: width, y: height + 14, class: 'axis', 'text-anchor': 'end'}, 'now'),
    s('text', {x: width, y: 12, class: 'axis', 'text-anchor': 'end'}, `max ${max}/h`),
  );
  return svg;
}

/** Horizontal bars: [{label, value, text}] (value in ms). */
export function labelBars(rows, {label, limit = 10}) {
  const top = [...rows].sort((a, b) => b.value - a.value).slice(0, limit);
  if (!top.length) return h('p', {class: 'muted'}, 'No step finished in this window.');
  const max = Math.max(1, ...top.map((r) => r.value));
  const rowH = 22;
  const width = 520;
  const labelW = 200;
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${width} ${top.length * rowH}`, role: 'img', 'aria-label': label});
  top.forEach((row, i) => {
    const y = i * rowH;
    const bw = ((width - labelW - 70) * row.value) / max;
    svg.append(
      s('text', {x: 0, y: y + 15, class: 'axis'}, row.label.length > 30 ? `${row.label.slice(0, 29)}…` : row.label),
      s('rect', {x: labelW, y: y + 4, width: Math.max(1, bw), height: rowH - 8, class: 'bar'}, s('title', {}, `${row.label}: ${duration(row.value)}`)),
      s('text', {x: labelW + bw + 6, y: y + 15, class: 'axis'}, duration(row.value)),
    );
  });
  return svg;
}

// Small DOM helpers: element builders, formatting, status badges. No framework.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** h('button', {class: 'x', onclick: fn}, 'text', child) builds an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** s('rect', {x: 1}) builds an SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of an element. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function statusBadge(status) {
  const text = status || 'Not started';
  return h('span', {class: `badge st-${status || 'none'}`}, text);
}

export function time(value) {
  if (!value) return '—';
  const d = new Date(value);
  const t = h('time', {datetime: d.toISOString(), title: d.toISOString()}, formatWhen(d));
  return t;
}

export function formatWhen(d) {
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const opts = sameDay
    ? {hour: '2-digit', minute: '2-digit', second: '2-digit'}
    : {month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'};
  return d.toLocaleString(undefined, opts);
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 2 : 1)} s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min} min ${Math.round(sec % 60)} s`;
  const hours = Math.floor(min / 60);
  return hours < 48 ? `${hours} h ${min % 60} min` : `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function between(start, end) {
  if (!start) return null;
  const a = new Date(start).getTime();
  const b = end ? new Date(end).getTime() : Date.now();
  return Math.max(0, b - a);
}

export function json(value) {
  return h('pre', {class: 'json'}, JSON.stringify(value, null, 2));
}

export function link(href, text, attrs) {
  return h('a', {href, ...attrs}, text);
}

export function runLink(runId) {
  return link(`#/runs/${encodeURIComponent(runId)}`, runId, {class: 'mono'});
}

/** A key-value list. */
export function facts(pairs) {
  return h('dl', {class: 'facts'}, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** Calls fn at most once per `wait` ms (trailing call kept). */
export function debounce(fn, wait) {
  let timer = null;
  let pending = false;
  let last = 0;
  const run = () => {
    timer = null;
    pending = false;
    last = Date.now();
    fn();
  };
  const call = () => {
    pending = true;
    if (timer) return;
    timer = setTimeout(run, Math.max(0, wait - (Date.now() - last)));
  };
  call.cancel = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    pending = false;
  };
  call.pending = () => pending;
  return call;
}

/** ForEach item indexes replaced by '*': each.3.charge -> each.*.charge (as the API's stats). */
export function stepTemplate(key) {
  return key
    .split('.')
    .map((part, i) => (i % 2 === 1 && /^\d+$/.test(part) ? '*' : part))
    .join('.');
}

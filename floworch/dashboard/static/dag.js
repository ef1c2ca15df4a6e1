// Draws a flow's DAG (laid out by the API: /api/flows/{id}/graph) as SVG, and colours it by
// step status. Nodes are SVG links, so they are in the tab order and open with Enter.

import {s, stepTemplate} from './dom.js';

// Which status a ForEach body node shows when its instances differ: the one that needs eyes.
const PRIORITY = ['Failed', 'TimedOut', 'Running', 'Waiting', 'Pending', 'Cancelled', 'Succeeded', 'Skipped'];

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function edgePath(points) {
  const [[sx, sy], [tx, ty]] = [points[0], points[points.length - 1]];
  const dx = Math.max(24, (tx - sx) / 2);
  return `M${sx},${sy} C${sx + dx},${sy} ${tx - dx},${ty} ${tx},${ty}`;
}

/**
 * Status per graph node key from a run's steps: {status, counts: {Succeeded: 3, ...}, total}.
 */
export function statusesOf(steps) {
  const byTemplate = new Map();
  for (const step of steps) {
    const key = stepTemplate(step.stepKey);
    let entry = byTemplate.get(key);
    if (!entry) {
      entry = {counts: {}, total: 0, status: null};
      byTemplate.set(key, entry);
    }
    entry.counts[step.status] = (entry.counts[step.status] || 0) + 1;
    entry.total += 1;
  }
  for (const entry of byTemplate.values()) {
    entry.status = PRIORITY.find((st) => entry.counts[st]) || null;
  }
  return byTemplate;
}

/**
 * Renders the graph into `container`. Options: href(nodeKey) for node links, label for the
 * SVG's accessible name. Returns {svg, update(statuses, selectedKey)}.
 */
export function renderDag(container, graph, {href, label = 'Flow graph'} = {}) {
  const pad = 8;
  const width = graph.width + 2 * pad;
  const height = graph.height + 2 * pad;
  const svg = s('svg', {
    class: 'dag',
    viewBox: `${-pad} ${-pad} ${width} ${height}`,
    width,
    height,
    role: 'group',
    'aria-label': label,
  });
  svg.append(
    s('defs', {}, s('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
      s('path', {d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead'}))),
  );
  const groups = s('g', {class: 'groups'});
  const edges = s('g', {class: 'edges'});
  const nodes = s('g', {class: 'nodes'});
  svg.append(groups, edges, nodes);
  const elements = new Map();

  for (const node of graph.nodes) {
    const target = href ? href(node.key) : null;
    const wrap = target ? s('a', {href: target, class: 'node-link', 'data-key': node.key}) : s('g', {'data-key': node.key});
    const title = s('title', {}, `${node.key}: ${node.type}`);
    wrap.append(title);
    if (node.group) {
      const rect = s('rect', {x: node.x, y: node.y, width: node.width, height: node.height, rx: 10, class: 'group st-none'});
      const head = s('text', {x: node.x + 10, y: node.y + 17, class: 'group-label'}, clip(`${node.stepKey} · ForEach`, 40));
      const count = s('text', {x: node.x + node.width - 10, y: node.y + 17, class: 'group-count', 'text-anchor': 'end'});
      wrap.append(rect, head, count);
      groups.append(wrap);
      elements.set(node.key, {node, wrap, rect, count, title});
    } else {
      const rect = s('rect', {x: node.x, y: node.y, width: node.width, height: node.height, rx: 7, class: 'node st-none'});
      const name = s('text', {x: node.x + 10, y: node.y + 19, class: 'node-label'}, clip(node.stepKey, 22));
      const type = s('text', {x: node.x + 10, y: node.y + 36, class: 'node-type'}, clip(node.type, 18));
      const count = s('text', {x: node.x + node.width - 8, y: node.y + 36, class: 'node-count', 'text-anchor': 'end'});
      wrap.append(rect, name, type, count);
      nodes.append(wrap);
      elements.set(node.key, {node, wrap, rect, count, title});
    }
  }
  for (const edge of graph.edges) {
    const path = s('path', {d: edgePath(edge.points), class: edge.label ? 'edge conditional' : 'edge', 'marker-end': 'url(#arrow)'});
    edges.append(path);
    if (edge.label) {
      const [[sx, sy], [tx, ty]] = [edge.points[0], edge.points[edge.points.length - 1]];
      edges.append(
        s('text', {x: sx + 0.62 * (tx - sx), y: sy + 0.62 * (ty - sy) - 5, class: 'edge-label', 'text-anchor': 'middle'},
          s('title', {}, edge.label), clip(edge.label, 26)),
      );
    }
  }
  container.replaceChildren(svg);

  function update(statuses, selected) {
    for (const [key, el] of elements) {
      const entry = statuses ? statuses.get(key) : null;
      const status = entry ? entry.status : null;
      const cls = `${el.node.group ? 'group' : 'node'} st-${status || 'none'}${key === selected ? ' selected' : ''}`;
      if (el.rect.getAttribute('class') !== cls) el.rect.setAttribute('class', cls);
      el.wrap.setAttribute('data-status', status || 'none');
      let text = '';
      if (entry && entry.total > 1) {
        const done = (entry.counts.Succeeded || 0) + (entry.counts.Skipped || 0);
        text = `${done}/${entry.total}`;
      } else if (!el.node.group && status) {
        text = status;
      }
      if (el.count.textContent !== text) el.count.textContent = text;
      const summary = entry
        ? Object.entries(entry.counts).map(([st, n]) => `${n} ${st}`).join(', ')
        : 'not started';
      el.title.textContent = `${key}: ${el.node.type} (${summary})`;
      if (key === selected) el.wrap.setAttribute('aria-current', 'true');
      else el.wrap.removeAttribute('aria-current');
    }
  }
  return {svg, update};
}

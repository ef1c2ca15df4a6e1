// Flows: each with its health over the last day and enable/disable.

import {api, seg} from '../api.js';
import {duration, fill, h, statusBadge} from '../dom.js';
import {actionButton} from '../ui.js';

export async function render(main) {
  const body = h('div');
  fill(main, h('h1', {}, 'Flows'), body);
  async function load() {
    const [flows, stats] = await Promise.all([api('flows'), api('stats?hours=24')]);
    const health = new Map();
    for (const c of stats.byStatus) {
      const f = health.get(c.flowId) || {total: 0, ok: 0, finished: 0};
      f.total += c.count;
      if (c.status === 'Succeeded') f.ok += c.count;
      if (c.status !== 'Running') f.finished += c.count;
      health.set(c.flowId, f);
    }
    const p95 = new Map(stats.runDurations.map((d) => [d.flowId, d.p95Ms]));
    fill(body, flows.flows.length ? h('table', {class: 'grid'},
      h('thead', {}, h('tr', {}, ['Flow', 'Enabled', 'Last run', 'Success (24 h)', 'p95 run time', 'Runs (24 h)', 'Triggers', ''].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, flows.flows.map((f) => {
        const hl = health.get(f.flowId);
        const rate = hl && hl.finished ? `${Math.round((100 * hl.ok) / hl.finished)} %` : '—';
        return h('tr', {'data-flow': f.flowId},
          h('td', {}, h('a', {href: `#/flows/${seg(f.flowId)}`}, f.flowId), f.description ? h('div', {class: 'hint'}, f.description) : null),
          h('td', {}, f.enabled ? h('span', {class: 'badge st-Succeeded'}, 'Enabled') : h('span', {class: 'badge st-Cancelled'}, 'Disabled')),
          h('td', {}, f.lastRunStatus ? statusBadge(f.lastRunStatus) : '—'),
          h('td', {}, rate),
          h('td', {}, duration(p95.get(f.flowId))),
          h('td', {}, hl ? hl.total : 0),
          h('td', {}, f.triggers.map((t) => t.type).join(', ')),
          h('td', {}, actionButton(f.enabled ? 'Disable' : 'Enable',
            () => api(`flows/${seg(f.flowId)}/${f.enabled ? 'disable' : 'enable'}`, {method: 'POST'}),
            {done: `${f.flowId} ${f.enabled ? 'disabled' : 'enabled'}`, after: () => load(), attrs: {'aria-label': `${f.enabled ? 'Disable' : 'Enable'} ${f.flowId}`}})));
      }))) : h('p', {class: 'muted'}, 'This host runs no flow.'));
  }
  await load();
}

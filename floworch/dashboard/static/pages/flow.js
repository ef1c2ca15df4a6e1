// Flow detail: the DAG, triggers, cron schedules (pause, resume, override, fire now), start a
// run, recent runs, the manifest.

import {api, seg} from '../api.js';
import {renderDag} from '../dag.js';
import {fill, h, json, runLink, statusBadge, time} from '../dom.js';
import {actionButton, jsonEditor, toast} from '../ui.js';

function scheduleRow(sc, reload) {
  const base = `schedules/${seg(sc.flowId)}/${seg(sc.triggerKey)}`;
  const input = h('input', {type: 'text', value: sc.effectiveCron, 'aria-label': `Cron expression of ${sc.triggerKey}`, class: 'mono', size: 16});
  return h('tr', {'data-trigger': sc.triggerKey},
    h('th', {scope: 'row'}, sc.triggerKey),
    h('td', {}, h('code', {}, sc.effectiveCron), sc.cronOverride ? h('div', {class: 'hint'}, `override of ${sc.cron}`) : null, h('div', {class: 'hint'}, sc.timezone)),
    h('td', {'data-testid': 'schedule-state'}, sc.paused ? h('span', {class: 'badge st-Waiting'}, 'Paused') : sc.flowEnabled ? h('span', {class: 'badge st-Succeeded'}, 'Active') : h('span', {class: 'badge st-Cancelled'}, 'Flow disabled')),
    h('td', {}, sc.upcoming.length ? h('ol', {class: 'plain'}, sc.upcoming.map((t) => h('li', {}, time(t)))) : '—'),
    h('td', {}, time(sc.lastFireAt)),
    h('td', {class: 'actions'}, h('div', {class: 'row'},
      sc.paused
        ? actionButton('Resume', () => api(`${base}/resume`, {method: 'POST'}), {done: `${sc.triggerKey} resumed`, after: reload})
        : actionButton('Pause', () => api(`${base}/pause`, {method: 'POST'}), {done: `${sc.triggerKey} paused`, after: reload}),
      actionButton('Fire now', () => api(`${base}/fire`, {method: 'POST'}), {done: (r) => `started run ${r.runId}`, after: (r) => { location.hash = `#/runs/${seg(r.runId)}`; }}),
      h('span', {class: 'row'}, input,
        actionButton('Set cron', () => api(`${base}/cron`, {method: 'PUT', body: {cron: input.value.trim()}}), {done: 'schedule changed', after: reload}),
        sc.cronOverride ? actionButton('Reset', () => api(`${base}/cron`, {method: 'PUT', body: {cron: null}}), {done: 'manifest schedule restored', after: reload}) : null))));
}

export async function render(main, [flowId]) {
  const [flow, graph] = await Promise.all([api(`flows/${seg(flowId)}`), api(`flows/${seg(flowId)}/graph`)]);
  const dagBox = h('div', {class: 'dag-box'});
  const scheduleBox = h('div');
  const runsBox = h('div');
  const toggle = h('span');
  const editor = jsonEditor({id: 'trigger-body', label: 'Trigger body (JSON)', initial: '{}'});
  const manual = flow.triggers.filter((t) => t.type === 'Manual');

  async function reloadSchedules() {
    const list = await api('schedules');
    const mine = list.schedules.filter((sc) => sc.flowId === flowId);
    fill(scheduleBox, mine.length ? h('table', {class: 'grid'},
      h('thead', {}, h('tr', {}, ['Trigger', 'Schedule', 'State', 'Next fire times', 'Last fired', ''].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, mine.map((sc) => scheduleRow(sc, reloadSchedules)))) : h('p', {class: 'muted'}, 'No cron trigger.'));
  }
  async function reloadRuns() {
    const page = await api(`runs?flowId=${seg(flowId)}&limit=10`);
    fill(runsBox, page.runs.length ? h('ul', {class: 'plain'}, page.runs.map((r) => h('li', {}, runLink(r.runId), ' ', statusBadge(r.status), ' ', time(r.createdAt)))) : h('p', {class: 'muted'}, 'No run yet.'),
      h('a', {href: `#/runs?flow=${seg(flowId)}`}, `All runs of ${flowId} (${page.total})`));
  }
  function renderToggle(enabled) {
    fill(toggle, enabled ? h('span', {class: 'badge st-Succeeded'}, 'Enabled') : h('span', {class: 'badge st-Cancelled'}, 'Disabled'), ' ',
      actionButton(enabled ? 'Disable flow' : 'Enable flow', () => api(`flows/${seg(flowId)}/${enabled ? 'disable' : 'enable'}`, {method: 'POST'}),
        {done: enabled ? 'flow disabled' : 'flow enabled', after: (f) => { renderToggle(f.enabled); reloadSchedules(); }}));
  }

  fill(main,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/flows'}, 'Flows'), ' / ', flowId),
    h('div', {class: 'row between'}, h('h1', {}, flowId, h('span', {class: 'hint'}, ` version ${flow.version}`)), toggle),
    flow.description ? h('p', {}, flow.description) : null,
    h('section', {class: 'panel', 'aria-labelledby': 'h-dag'}, h('h2', {id: 'h-dag'}, `Steps (${flow.stepCount})`), dagBox),
    h('div', {class: 'columns'},
      h('section', {class: 'panel', 'aria-labelledby': 'h-triggers'}, h('h2', {id: 'h-triggers'}, 'Triggers'),
        h('table', {class: 'grid'}, h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Key'), h('th', {scope: 'col'}, 'Type'), h('th', {scope: 'col'}, 'Detail'))),
          h('tbody', {}, flow.triggers.map((t) => h('tr', {}, h('td', {}, t.key), h('td', {}, t.type), h('td', {class: 'mono'}, t.cron || (t.slug ? `api/webhooks/${t.slug}` : '') || t.queue || '')))))),
      h('section', {class: 'panel', 'aria-labelledby': 'h-start'}, h('h2', {id: 'h-start'}, 'Start a run'),
        manual.length ? [editor.el, actionButton('Start run', () => {
          if (!editor.valid()) { toast('The trigger body is not valid JSON.', 'error'); return false; }
          return api(`flows/${seg(flowId)}/runs?trigger=${seg(manual[0].key)}`, {method: 'POST', body: editor.value()});
        }, {kind: 'primary', done: (r) => `started run ${r.runId}`, after: (r) => { location.hash = `#/runs/${seg(r.runId)}`; }})]
          : h('p', {class: 'muted'}, 'This flow has no Manual trigger.'))),
    h('section', {class: 'panel', 'aria-labelledby': 'h-schedules'}, h('h2', {id: 'h-schedules'}, 'Schedules'), scheduleBox),
    h('section', {class: 'panel', 'aria-labelledby': 'h-recent'}, h('h2', {id: 'h-recent'}, 'Recent runs'), runsBox),
    h('details', {class: 'panel'}, h('summary', {}, 'Manifest'), json(flow.manifest)));
  renderDag(dagBox, graph, {label: `Steps of ${flowId}`}).svg.classList.add('plain');
  renderToggle(flow.enabled);
  await Promise.all([reloadSchedules(), reloadRuns()]);
}

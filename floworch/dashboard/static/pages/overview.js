// Overview: runs by status over a window, failures needing attention, active runs,
// throughput and p95 step durations, dead-lettered messages.

import {api} from '../api.js';
import {labelBars, timeBars} from '../charts.js';
import {debounce, duration, fill, h, runLink, statusBadge, time} from '../dom.js';
import {follow, latestEventId} from '../live.js';
import {errorPanel} from '../ui.js';

const WINDOWS = [
  ['1', 'Last hour'],
  ['24', 'Last day'],
  ['168', 'Last week'],
];
const STATUSES = ['Running', 'Succeeded', 'Failed', 'TimedOut', 'Cancelled', 'Skipped'];

function runTable(runs, empty) {
  if (!runs.length) return h('p', {class: 'muted'}, empty);
  return h('table', {class: 'grid'},
    h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Run'), h('th', {scope: 'col'}, 'Flow'), h('th', {scope: 'col'}, 'Status'), h('th', {scope: 'col'}, 'Started'))),
    h('tbody', {}, runs.map((r) => h('tr', {}, h('td', {}, runLink(r.runId)), h('td', {}, h('a', {href: `#/flows/${encodeURIComponent(r.flowId)}`}, r.flowId)), h('td', {}, statusBadge(r.status)), h('td', {}, time(r.createdAt))))));
}

export async function render(main, _params, query) {
  const hours = WINDOWS.some(([v]) => v === query.get('hours')) ? query.get('hours') : '24';
  const body = h('div', {class: 'overview'});
  const picker = h('div', {class: 'segmented', role: 'group', 'aria-label': 'Window'},
    WINDOWS.map(([value, text]) => h('a', {href: `#/?hours=${value}`, class: 'button', 'aria-current': value === hours ? 'true' : null}, text)));
  fill(main, h('div', {class: 'row between'}, h('h1', {}, 'Overview'), picker), body);

  async function load() {
    const since = new Date(Date.now() - Number(hours) * 3600e3).toISOString();
    const [stats, failed, active] = await Promise.all([
      api(`stats?hours=${hours}`),
      api(`runs?status=Failed&status=TimedOut&startedAfter=${encodeURIComponent(since)}&limit=10`),
      api('runs?status=Running&limit=10'),
    ]);
    const totals = Object.fromEntries(STATUSES.map((st) => [st, 0]));
    for (const c of stats.byStatus) totals[c.status] = (totals[c.status] || 0) + c.count;
    const all = Object.values(totals).reduce((a, b) => a + b, 0);
    const rejections = Object.values(stats.webhookRejections).reduce((a, b) => a + b, 0);
    fill(body,
      h('section', {class: 'cards', 'aria-label': 'Runs by status'},
        h('div', {class: 'card'}, h('span', {class: 'label'}, 'Runs started'), h('span', {class: 'value', 'data-testid': 'runs-total'}, all)),
        STATUSES.map((st) => h('a', {class: `card st-border-${st}`, href: `#/runs?status=${st}&after=${encodeURIComponent(since)}`},
          h('span', {class: 'label'}, st), h('span', {class: 'value', 'data-testid': `count-${st}`}, totals[st]))),
        h('div', {class: 'card'}, h('span', {class: 'label'}, 'Dead-lettered messages'),
          h('span', {class: 'value', 'data-testid': 'dead-lettered', title: 'Counted by this host since it started'}, stats.deadLettered ?? '—')),
        h('div', {class: 'card'}, h('span', {class: 'label'}, 'Webhook rejections'), h('span', {class: 'value'}, rejections))),
      stats.sampled ? h('p', {class: 'hint'}, 'Many runs in this window: the charts cover the newest 50,000.') : null,
      h('div', {class: 'columns'},
        h('section', {class: 'panel', 'aria-labelledby': 'h-failures'}, h('h2', {id: 'h-failures'}, 'Failures needing attention'),
          runTable(failed.runs, 'No failed run in this window.'),
          failed.total > failed.runs.length ? h('a', {href: `#/runs?status=Failed&status=TimedOut&after=${encodeURIComponent(since)}`}, `All ${failed.total} failed runs`) : null),
        h('section', {class: 'panel', 'aria-labelledby': 'h-active'}, h('h2', {id: 'h-active'}, `Active runs (${active.total})`),
          runTable(active.runs, 'Nothing is running.'),
          active.total > active.runs.length ? h('a', {href: '#/runs?status=Running'}, `All ${active.total} running runs`) : null)),
      h('div', {class: 'columns'},
        h('section', {class: 'panel', 'aria-labelledby': 'h-throughput'}, h('h2', {id: 'h-throughput'}, 'Throughput (runs per hour)'),
          timeBars(stats.runsPerHour, {label: 'Runs started per hour', hours: Number(hours)})),
        h('section', {class: 'panel', 'aria-labelledby': 'h-p95'}, h('h2', {id: 'h-p95'}, 'Slowest steps (p95 duration)'),
          labelBars(stats.stepDurations.map((d) => ({label: `${d.flowId} · ${d.stepKey}`, value: d.p95Ms})), {label: 'p95 step durations'}),
          h('p', {class: 'hint'}, stats.stepDurations.length ? `${stats.stepDurations.reduce((a, d) => a + d.count, 0)} attempts; p95 of the slowest: ${duration(Math.max(...stats.stepDurations.map((d) => d.p95Ms)))}` : ''))));
  }

  try {
    await load();
  } catch (err) {
    fill(body, errorPanel(err));
  }
  const refresh = debounce(() => load().catch(() => {}), 1500);
  const stop = follow({since: await latestEventId().catch(() => 0), onEvent: (e) => {
    if (e.kind.startsWith('Run') || e.kind === 'StepFailed') refresh();
  }});
  return () => {
    stop();
    refresh.cancel();
  };
}

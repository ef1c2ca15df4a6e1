// Runs: filter by flow, status, time range, run id or idempotency key; keyset paging; bulk
// cancel of the running runs that match.

import {api, seg} from '../api.js';
import {between, debounce, duration, fill, h, runLink, statusBadge, time} from '../dom.js';
import {follow, latestEventId} from '../live.js';
import {confirmDialog, errorPanel, errorText, toast} from '../ui.js';

const STATUSES = ['Running', 'Succeeded', 'Failed', 'TimedOut', 'Cancelled', 'Skipped'];
const PAGE = 50;

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : '';
}

/** The API query of a filter (URLSearchParams of the page's own address). */
function apiQuery(filter, cursor) {
  const q = new URLSearchParams();
  if (filter.get('flow')) q.set('flowId', filter.get('flow'));
  for (const st of filter.getAll('status')) q.append('status', st);
  if (filter.get('after')) q.set('startedAfter', filter.get('after'));
  if (filter.get('before')) q.set('startedBefore', filter.get('before'));
  if (filter.get('q')) q.set('q', filter.get('q'));
  q.set('limit', String(PAGE));
  if (cursor) q.set('cursor', cursor);
  return q.toString();
}

export async function render(main, _params, query) {
  const flows = await api('flows');
  let filter = query;
  let cursors = [null]; // the cursor of each page seen, for Previous
  const flowSelect = h('select', {id: 'f-flow', name: 'flow'}, h('option', {value: ''}, 'All flows'), flows.flows.map((f) => h('option', {value: f.flowId}, f.flowId)));
  const statusBoxes = STATUSES.map((st) => h('label', {class: 'check'}, h('input', {type: 'checkbox', name: 'status', value: st}), ` ${st}`));
  const after = h('input', {type: 'datetime-local', id: 'f-after', name: 'after'});
  const before = h('input', {type: 'datetime-local', id: 'f-before', name: 'before'});
  const text = h('input', {type: 'search', id: 'f-q', name: 'q', placeholder: 'run id or idempotency key (prefix)', size: 28});
  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter runs'},
    h('div', {class: 'field'}, h('label', {for: 'f-flow'}, 'Flow'), flowSelect),
    h('fieldset', {class: 'field'}, h('legend', {}, 'Status'), h('div', {class: 'row'}, statusBoxes)),
    h('div', {class: 'field'}, h('label', {for: 'f-after'}, 'Started after'), after),
    h('div', {class: 'field'}, h('label', {for: 'f-before'}, 'Started before'), before),
    h('div', {class: 'field'}, h('label', {for: 'f-q'}, 'Run id / key'), text),
    h('div', {class: 'field end'}, h('button', {type: 'submit', class: 'primary'}, 'Apply'), h('button', {type: 'button', onclick: () => { location.hash = '#/runs'; }}, 'Clear')));
  const summary = h('p', {class: 'muted', 'aria-live': 'polite', id: 'runs-summary'});
  const table = h('div', {class: 'table-box'});
  const pager = h('div', {class: 'row'});
  const bulk = h('button', {type: 'button', class: 'danger'}, 'Cancel running runs that match…');
  fill(main, h('div', {class: 'row between'}, h('h1', {}, 'Runs'), bulk), form, summary, table, pager);

  function show(f) {
    flowSelect.value = f.get('flow') || '';
    const wanted = new Set(f.getAll('status'));
    for (const box of form.querySelectorAll('input[name=status]')) box.checked = wanted.has(box.value);
    after.value = toLocalInput(f.get('after'));
    before.value = toLocalInput(f.get('before'));
    text.value = f.get('q') || '';
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (flowSelect.value) q.set('flow', flowSelect.value);
    for (const box of form.querySelectorAll('input[name=status]:checked')) q.append('status', box.value);
    if (after.value) q.set('after', fromLocalInput(after.value));
    if (before.value) q.set('before', fromLocalInput(before.value));
    if (text.value.trim()) q.set('q', text.value.trim());
    location.hash = `#/runs${q.toString() ? `?${q}` : ''}`;
  });

  async function load(pageIndex) {
    const page = await api(`runs?${apiQuery(filter, cursors[pageIndex])}`);
    cursors = cursors.slice(0, pageIndex + 1);
    if (page.nextCursor) cursors.push(page.nextCursor);
    const first = pageIndex * PAGE + 1;
    summary.textContent = page.total ? `${page.total} run(s) match; showing ${first}–${first + page.runs.length - 1}.` : 'No run matches.';
    fill(table, page.runs.length ? h('table', {class: 'grid', 'aria-describedby': 'runs-summary'},
      h('thead', {}, h('tr', {}, ['Run', 'Flow', 'Status', 'Started', 'Duration', 'Trigger', 'Idempotency key'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, page.runs.map((r) => h('tr', {'data-run': r.runId},
        h('td', {}, runLink(r.runId), r.sourceRunId ? h('div', {class: 'hint'}, 'rerun of ', runLink(r.sourceRunId)) : null),
        h('td', {}, h('a', {href: `#/flows/${seg(r.flowId)}`}, r.flowId)),
        h('td', {}, statusBadge(r.status)),
        h('td', {}, time(r.createdAt)),
        h('td', {}, duration(between(r.createdAt, r.completedAt))),
        h('td', {}, r.triggerKey),
        h('td', {class: 'mono'}, r.idempotencyKey || ''))))) : null);
    fill(pager,
      pageIndex > 0 ? h('button', {type: 'button', onclick: () => load(pageIndex - 1).catch(fail)}, '← Previous') : null,
      page.nextCursor ? h('button', {type: 'button', onclick: () => load(pageIndex + 1).catch(fail)}, 'Next →') : null);
    current = pageIndex;
  }
  let current = 0;
  const fail = (err) => fill(table, errorPanel(err));

  bulk.addEventListener('click', async () => {
    try {
      const running = new URLSearchParams(apiQuery(filter, null));
      running.delete('status');
      running.set('status', 'Running');
      running.set('limit', '1');
      const {total} = await api(`runs?${running}`);
      if (!total) {
        toast('No running run matches these filters.', 'info');
        return;
      }
      const limit = Math.min(total, 1000);
      const ok = await confirmDialog({title: 'Cancel runs', danger: true, confirm: `Cancel ${limit} run(s)`,
        body: `${total} running run(s) match these filters${total > limit ? `; the first ${limit} will be cancelled` : ''}. Their steps stop; this cannot be undone.`});
      if (!ok) return;
      const result = await api('runs/bulk-cancel', {method: 'POST', body: {
        flowId: filter.get('flow') || null, startedAfter: filter.get('after') || null,
        startedBefore: filter.get('before') || null, q: filter.get('q') || null, limit,
        reason: 'bulk cancel from the dashboard'}});
      toast(`Cancelled ${result.cancelled.length} run(s); ${result.remaining} still running.`, 'ok');
      await load(0);
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });

  show(filter);
  await load(0);
  // Live: refresh the first page when runs start or end (later pages stay put while read).
  const refresh = debounce(() => { if (current === 0) load(0).catch(() => {}); }, 2000);
  const stop = follow({since: await latestEventId().catch(() => 0), onEvent: (e) => { if (e.kind.startsWith('Run')) refresh(); }});
  return () => {
    stop();
    refresh.cancel();
  };
}

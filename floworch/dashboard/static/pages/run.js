// Run detail: the DAG coloured by step status and updating live, the timeline of steps and
// attempts, each step's inputs, output, errors, When trace and skip reason, the actions
// (retry a step, cancel, rerun, deliver a signal) and the event log.

import {api, ApiError, seg} from '../api.js';
import {renderDag, statusesOf} from '../dag.js';
import {between, debounce, duration, facts, fill, h, json, runLink, statusBadge, stepTemplate, time} from '../dom.js';
import {follow} from '../live.js';
import {timeline} from '../timeline.js';
import {actionButton, confirmDialog, errorText, jsonEditor, toast} from '../ui.js';

const RETRYABLE = new Set(['Failed', 'TimedOut', 'Cancelled']);
const MAX_EVENTS_SHOWN = 2000;

function errorBlock(error) {
  if (error === null || error === undefined) return null;
  if (typeof error !== 'object') return h('pre', {class: 'error-text'}, String(error));
  const {type, message, traceback, ...extra} = error;
  return h('div', {class: 'error-box'},
    h('p', {}, type ? h('strong', {}, `${type}: `) : null, message || ''),
    Object.keys(extra).length ? json(extra) : null,
    traceback ? h('details', {}, h('summary', {}, 'Traceback'), h('pre', {class: 'traceback'}, traceback)) : null);
}

function whenTrace(trace) {
  if (!Array.isArray(trace) || !trace.length) return null;
  return h('table', {class: 'grid when'},
    h('thead', {}, h('tr', {}, ['After', 'Condition', 'Resolved to', 'Result'].map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, trace.map((c) => h('tr', {},
      h('td', {}, c.predecessor), h('td', {class: 'mono'}, c.expression), h('td', {class: 'mono'}, c.resolved),
      h('td', {}, c.error ? h('span', {class: 'badge st-Failed'}, `error: ${c.error}`) : c.result ? h('span', {class: 'badge st-Succeeded'}, 'true') : h('span', {class: 'badge st-Skipped'}, 'false'))))));
}

export async function render(main, [runId], query) {
  let run = await api(`runs/${seg(runId)}`);
  let graph = null;
  let graphNote = null;
  try {
    graph = await api(`flows/${seg(run.flowId)}/graph`);
  } catch (err) {
    graphNote = err instanceof ApiError && err.status === 404 ? `This host does not run flow ${run.flowId}: no graph to draw.` : errorText(err);
  }
  let selected = query.get('step');
  let events = [];
  let lastEventId = 0;

  const header = h('div');
  const actions = h('div', {class: 'row actions'});
  const signals = h('section', {class: 'panel', 'aria-labelledby': 'h-signals', hidden: true});
  const dagBox = h('div', {class: 'dag-box'});
  const stepsBox = h('div', {class: 'table-box steps'});
  const detail = h('section', {class: 'panel step-detail', 'aria-labelledby': 'h-step', tabindex: '-1'});
  const timelineBox = h('div', {class: 'timeline-box'});
  const eventsBox = h('div', {class: 'table-box events'});
  const liveNote = h('span', {class: 'hint', 'aria-live': 'polite'});

  fill(main,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/runs'}, 'Runs'), ' / ', runId),
    header, actions, signals,
    h('section', {class: 'panel', 'aria-labelledby': 'h-graph'}, h('div', {class: 'row between'}, h('h2', {id: 'h-graph'}, 'Steps'), liveNote), graphNote ? h('p', {class: 'muted'}, graphNote) : null, dagBox,
      h('div', {class: 'legend', 'aria-hidden': 'true'}, ['Succeeded', 'Running', 'Waiting', 'Pending', 'Failed', 'TimedOut', 'Skipped', 'Cancelled', 'none'].map((st) => h('span', {class: `badge st-${st}`}, st === 'none' ? 'Not started' : st)))),
    h('div', {class: 'columns steps-columns'}, h('section', {class: 'panel', 'aria-labelledby': 'h-steplist'}, h('h2', {id: 'h-steplist'}, 'Step list'), stepsBox), detail),
    h('section', {class: 'panel', 'aria-labelledby': 'h-timeline'}, h('h2', {id: 'h-timeline'}, 'Timeline'),
      h('p', {class: 'hint'}, 'Each attempt: light = waiting to start (queue delay, back-off), solid = running.'), timelineBox),
    h('section', {class: 'panel', 'aria-labelledby': 'h-events'}, h('h2', {id: 'h-events'}, 'Event log'), eventsBox));

  const dag = graph ? renderDag(dagBox, graph, {href: (key) => `#/runs/${seg(runId)}?step=${seg(key)}`, label: `Steps of run ${runId}`}) : null;

  const stepHref = (key) => `#/runs/${seg(runId)}?step=${seg(key)}`;

  function renderHeader() {
    const lineage = [
      run.sourceRunId ? ['Rerun of', runLink(run.sourceRunId)] : null,
      run.reruns.length ? ['Reruns', h('span', {}, run.reruns.map((r, i) => [i ? ', ' : '', runLink(r)]))] : null,
    ];
    fill(header,
      h('div', {class: 'row between'}, h('h1', {class: 'mono'}, `Run ${runId}`), h('span', {'data-testid': 'run-status'}, statusBadge(run.status))),
      facts([
        ['Flow', h('a', {href: `#/flows/${seg(run.flowId)}`}, `${run.flowId} (v${run.flowVersion})`)],
        ['Trigger', run.triggerKey],
        ['Started', time(run.createdAt)],
        ['Finished', time(run.completedAt)],
        ['Duration', duration(between(run.createdAt, run.completedAt))],
        run.idempotencyKey ? ['Idempotency key', h('span', {class: 'mono'}, run.idempotencyKey)] : null,
        run.cancelReason ? ['Cancelled because', run.cancelReason] : null,
        run.timeoutAt ? ['Times out', time(run.timeoutAt)] : null,
        ...lineage,
      ]),
      h('details', {}, h('summary', {}, 'Trigger body and headers'), json(run.triggerBody), json(run.triggerHeaders)));
    fill(actions,
      run.status === 'Running' ? h('button', {type: 'button', class: 'danger', onclick: cancelRun}, 'Cancel run') : null,
      run.status !== 'Running' ? actionButton('Rerun', () => api(`runs/${seg(runId)}/rerun`, {method: 'POST'}),
        {done: (r) => `started run ${r.runId}`, after: (r) => { location.hash = `#/runs/${seg(r.runId)}`; }}) : null);
  }

  async function cancelRun() {
    const reason = h('input', {type: 'text', id: 'cancel-reason', value: 'cancelled from the dashboard', size: 40});
    const ok = await confirmDialog({title: `Cancel run ${runId}?`, danger: true, confirm: 'Cancel run',
      body: h('div', {}, h('p', {}, 'Running and waiting steps stop; nothing further starts.'), h('label', {for: 'cancel-reason'}, 'Reason '), reason)});
    if (!ok) return;
    try {
      await api(`runs/${seg(runId)}/cancel`, {method: 'POST', body: {reason: reason.value || 'cancelled from the dashboard'}});
      toast('run cancelled', 'ok');
      refresh();
    } catch (err) {
      toast(errorText(err), 'error');
    }
  }

  function renderSignals() {
    const waiting = run.waitingFor.filter((w) => !w.deliveredAt);
    signals.hidden = !waiting.length || run.status !== 'Running';
    if (signals.hidden) return fill(signals);
    fill(signals, h('h2', {id: 'h-signals'}, 'Waiting for signals'), waiting.map((w, i) => {
      const editor = jsonEditor({id: `signal-${i}`, label: `Payload of signal “${w.signalName}”`, initial: '{\n  "approved": true\n}'});
      return h('div', {class: 'signal', 'data-signal': w.signalName},
        h('p', {}, 'Step ', h('a', {href: stepHref(w.stepKey)}, w.stepKey), ` waits for signal `, h('code', {}, w.signalName), ' since ', time(w.since), w.expiresAt ? [' until ', time(w.expiresAt)] : null),
        editor.el,
        actionButton(`Deliver ${w.signalName}`, () => {
          if (!editor.valid()) { toast('The payload is not valid JSON.', 'error'); return false; }
          return api(`runs/${seg(runId)}/signals/${seg(w.signalName)}`, {method: 'POST', body: editor.value()});
        }, {kind: 'primary', done: (r) => `signal ${r.signalName}: ${r.outcome}`, after: () => refresh()}));
    }));
  }

  function renderSteps() {
    const rows = [...run.steps].sort((a, b) => (a.createdAt || '').localeCompare(b.createdAt || '') || a.stepKey.localeCompare(b.stepKey));
    fill(stepsBox, h('table', {class: 'grid'},
      h('thead', {}, h('tr', {}, ['Step', 'Type', 'Status', 'Attempts', 'Duration'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, rows.map((st) => h('tr', {'data-step': st.stepKey, class: st.stepKey === selected ? 'selected' : null},
        h('td', {}, h('a', {href: stepHref(st.stepKey), 'aria-current': st.stepKey === selected ? 'true' : null}, st.stepKey)),
        h('td', {}, st.stepType), h('td', {}, statusBadge(st.status)), h('td', {}, st.attempts.length),
        h('td', {}, duration(between(st.startedAt, st.completedAt))))))));
  }

  function renderDetail() {
    if (!selected) {
      fill(detail, h('h2', {id: 'h-step'}, 'Step'), h('p', {class: 'muted'}, 'Choose a step in the graph or the list to see its inputs, output, errors and why it ran or was skipped.'));
      return;
    }
    const step = run.steps.find((st) => st.stepKey === selected);
    if (!step) {
      const instances = run.steps.filter((st) => stepTemplate(st.stepKey) === selected);
      fill(detail, h('h2', {id: 'h-step'}, selected),
        instances.length
          ? [h('p', {}, `${instances.length} instance(s) of this ForEach body step:`), h('ul', {class: 'plain instances'}, instances.map((st) => h('li', {}, h('a', {href: stepHref(st.stepKey)}, st.stepKey), ' ', statusBadge(st.status))))]
          : h('p', {class: 'muted'}, 'This step has not started in this run (its predecessors have not finished, or the run ended first).'));
      return;
    }
    const skipped = step.status === 'Skipped';
    const myEvents = events.filter((e) => e.stepKey === step.stepKey);
    fill(detail,
      h('div', {class: 'row between'}, h('h2', {id: 'h-step', class: 'mono'}, step.stepKey), statusBadge(step.status)),
      RETRYABLE.has(step.status) ? actionButton('Retry step', () => api(`runs/${seg(runId)}/steps/${seg(step.stepKey)}/retry`, {method: 'POST'}),
        {kind: 'primary', done: `retrying ${step.stepKey}`, after: () => refresh()}) : null,
      facts([
        ['Type', step.stepType], ['Attempt', step.attempt], ['Created', time(step.createdAt)], ['Started', time(step.startedAt)],
        ['Finished', time(step.completedAt)], ['Ran for', duration(between(step.startedAt, step.completedAt))],
        step.dueAt ? ['Due', time(step.dueAt)] : null,
      ]),
      skipped ? h('div', {class: 'why skipped', 'data-testid': 'skip-reason'}, h('h3', {}, 'Why it was skipped'), h('p', {}, step.skipReason || 'its runAfter rules were not met')) : null,
      step.whenTrace ? h('div', {class: 'why'}, h('h3', {}, skipped ? 'When clauses' : 'Why it ran (When clauses)'), whenTrace(step.whenTrace)) : null,
      step.error !== null && step.error !== undefined ? h('div', {}, h('h3', {}, 'Error'), errorBlock(step.error)) : null,
      h('h3', {}, 'Inputs'), json(step.inputs),
      h('h3', {}, 'Output'), json(step.output),
      h('h3', {}, `Attempts (${step.attempts.length})`),
      step.attempts.length ? h('ol', {class: 'attempts'}, step.attempts.map((a) => h('li', {},
        h('div', {class: 'row'}, `#${a.attempt} `, statusBadge(a.status), ' ', time(a.startedAt), ' → ', time(a.completedAt), ` (${duration(between(a.startedAt, a.completedAt))})`),
        errorBlock(a.error)))) : h('p', {class: 'muted'}, 'No attempt finished yet.'),
      h('h3', {}, 'Log (events of this step)'),
      myEvents.length ? h('ul', {class: 'plain log'}, myEvents.map((e) => h('li', {}, time(e.at), ' ', h('strong', {}, e.kind), ' ', e.message))) : h('p', {class: 'muted'}, 'No event yet.'));
  }

  const eventRows = h('tbody');
  fill(eventsBox, h('table', {class: 'grid'}, h('thead', {}, h('tr', {}, ['#', 'At', 'Kind', 'Step', 'Message'].map((t) => h('th', {scope: 'col'}, t)))), eventRows));
  function addEvents(found) {
    for (const e of found) {
      if (e.eventId <= lastEventId) continue;
      lastEventId = e.eventId;
      events.push(e);
      if (events.length <= MAX_EVENTS_SHOWN) {
        eventRows.append(h('tr', {}, h('td', {}, e.eventId), h('td', {}, time(e.at)), h('td', {}, e.kind),
          h('td', {}, e.stepKey ? h('a', {href: stepHref(e.stepKey)}, e.stepKey) : ''), h('td', {}, e.message)));
      }
    }
  }

  function paint() {
    renderHeader();
    renderSignals();
    if (dag) dag.update(statusesOf(run.steps), selected && stepTemplate(selected));
    renderSteps();
    renderDetail();
    timelineBox.replaceChildren(timeline(run, {href: stepHref}));
  }

  async function loadEvents() {
    for (;;) {
      const page = await api(`runs/${seg(runId)}/events?after=${lastEventId}&limit=1000`);
      addEvents(page.events);
      if (page.events.length < 1000) break;
    }
  }

  let stop = () => {};
  let following = false;
  const refresh = debounce(async () => {
    try {
      run = await api(`runs/${seg(runId)}`);
      paint();
      // A retry or a signal can make a finished run run again: follow it again.
      if (run.status === 'Running' && !following) startFollowing();
    } catch (err) {
      toast(errorText(err), 'error');
    }
  }, 300);
  function startFollowing() {
    following = true;
    liveNote.textContent = '';
    stop = follow({runId, since: lastEventId, onEvent: (e) => { addEvents([e]); refresh(); },
      onEnd: () => {
        following = false;
        liveNote.textContent = 'Run finished.';
        refresh();
      }});
  }

  await loadEvents();
  paint();
  startFollowing();
  current = {
    select(step) {
      selected = step;
      if (dag) dag.update(statusesOf(run.steps), selected && stepTemplate(selected));
      renderSteps();
      renderDetail();
      if (selected) detail.focus({preventScroll: false});
    },
  };
  return () => {
    stop();
    refresh.cancel();
    current = null;
  };
}

let current = null;

export function onQuery(query) {
  if (current) current.select(query.get('step'));
}

// The run's timeline (a Gantt chart): one row per step, each attempt a bar split into the time
// it waited to start (queue delay, back-off) and the time it ran.

import {duration, s, stepTemplate} from './dom.js';

const ROW = 20;
const LABEL = 190;
const WIDTH = 900;

function ms(value) {
  return value ? new Date(value).getTime() : null;
}

/** Segments of one step: [{from, to, kind: 'queue'|'run', attempt, status}] (ms since epoch). */
export function segmentsOf(step, now) {
  const out = [];
  // A step is ready when created, or when due (a delayed retry); a due time still ahead is a
  // deadline, not a start.
  const due = ms(step.dueAt);
  let ready = due && due <= now && due > ms(step.createdAt) ? due : ms(step.createdAt);
  for (const a of step.attempts) {
    const started = ms(a.startedAt);
    const done = ms(a.completedAt);
    if (started && ready && started > ready) out.push({from: ready, to: started, kind: 'queue', attempt: a.attempt, status: a.status});
    if (started) out.push({from: started, to: done || now, kind: 'run', attempt: a.attempt, status: a.status});
    ready = done;
  }
  const last = step.attempts[step.attempts.length - 1];
  const current = ms(step.startedAt);
  if (step.status === 'Running' && current && (!last || ms(last.completedAt) < current)) {
    if (ready && current > ready) out.push({from: ready, to: current, kind: 'queue', attempt: step.attempt, status: 'Running'});
    out.push({from: current, to: now, kind: 'run', attempt: step.attempt, status: 'Running'});
  } else if (!step.attempts.length && current) {
    // Built-in steps (ForEach, WaitForSignal, Delay) have no handler attempts: their span.
    out.push({from: current, to: ms(step.completedAt) || now, kind: 'run', attempt: step.attempt, status: step.status});
  } else if ((step.status === 'Pending' || step.status === 'Waiting') && ready && ready < now) {
    out.push({from: ready, to: now, kind: 'queue', attempt: step.attempt, status: step.status});
  }
  return out;
}

/** An SVG Gantt chart of a run's steps. */
export function timeline(run, {href}) {
  const now = run.completedAt ? ms(run.completedAt) : Date.now();
  const start = ms(run.createdAt);
  const steps = [...run.steps].sort((a, b) => (ms(a.createdAt) || 0) - (ms(b.createdAt) || 0) || a.stepKey.localeCompare(b.stepKey));
  const span = Math.max(1, now - start);
  const x = (t) => LABEL + ((WIDTH - LABEL - 10) * (t - start)) / span;
  const height = steps.length * ROW + 24;
  const svg = s('svg', {class: 'timeline', viewBox: `0 0 ${WIDTH} ${height}`, width: WIDTH, height, role: 'group', 'aria-label': 'Timeline of steps and attempts'});
  steps.forEach((step, i) => {
    const y = i * ROW;
    const label = s('text', {x: 4, y: y + 14, class: 'axis'}, step.stepKey.length > 28 ? `${step.stepKey.slice(0, 27)}…` : step.stepKey);
    svg.append(href ? s('a', {href: href(step.stepKey)}, label) : label);
    for (const seg of segmentsOf(step, now)) {
      const x0 = x(seg.from);
      const w = Math.max(1.5, x(seg.to) - x0);
      const cls = seg.kind === 'queue' ? 'seg queue' : `seg run st-${seg.status}`;
      svg.append(
        s('rect', {x: x0, y: y + 3, width: w, height: ROW - 6, class: cls, 'data-template': stepTemplate(step.stepKey)},
          s('title', {}, `${step.stepKey} attempt ${seg.attempt}: ${seg.kind === 'queue' ? 'waited' : 'ran'} ${duration(seg.to - seg.from)}`)),
      );
    }
  });
  const axisY = steps.length * ROW + 16;
  svg.append(
    s('text', {x: LABEL, y: axisY, class: 'axis'}, '0'),
    s('text', {x: WIDTH - 10, y: axisY, class: 'axis', 'text-anchor': 'end'}, duration(span)),
  );
  return svg;
}

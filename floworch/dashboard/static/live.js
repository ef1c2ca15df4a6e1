// Live updates: server-sent events read with fetch (so the bearer token goes along), and a
// polling fallback on /api/events when the stream cannot be had (a proxy that buffers, an
// old browser, a host that closes streams). Reconnects continue after the last event id.

import {api, authHeaders} from './api.js';

const FIRST_BYTE_TIMEOUT_MS = 5000;
const POLL_MS = 2000;
const STREAM_FAILURES_BEFORE_POLLING = 3;

const listeners = new Set();
let mode = 'idle';

/** Subscribes to the connection state: 'live' | 'polling' | 'offline' | 'idle'. */
export function onMode(fn) {
  listeners.add(fn);
  fn(mode);
  return () => listeners.delete(fn);
}

function setMode(next) {
  if (next === mode) return;
  mode = next;
  for (const fn of listeners) fn(mode);
}

/** Whether this page was asked to poll only (?live=poll in the address). */
function pollingForced() {
  return new URLSearchParams(location.search).get('live') === 'poll';
}

/** Parses one SSE block into {id, event, data}. */
function parseBlock(block) {
  const msg = {id: null, event: 'message', data: ''};
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const at = line.indexOf(':');
    const field = at < 0 ? line : line.slice(0, at);
    let value = at < 0 ? '' : line.slice(at + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') msg.id = value;
    else if (field === 'event') msg.event = value;
    else if (field === 'data') data.push(value);
  }
  msg.data = data.join('\n');
  return msg;
}

/**
 * Follows events. `runId` null: every run's events. Starts after `since` (an event id).
 * onEvent(event) gets each API event object; onEnd(status) is called once a run's stream ends.
 * Returns a function that stops following.
 */
export function follow({runId = null, since = 0, onEvent, onEnd = () => {}}) {
  let after = since;
  let stopped = false;
  let controller = null;
  let failures = 0;
  let timer = null;

  const deliver = (event) => {
    if (event.eventId > after) after = event.eventId;
    onEvent(event);
  };

  async function stream() {
    controller = new AbortController();
    const path = runId ? `api/runs/${encodeURIComponent(runId)}/stream` : 'api/stream';
    let gotBytes = false;
    const firstByte = setTimeout(() => {
      if (!gotBytes) controller.abort();
    }, FIRST_BYTE_TIMEOUT_MS);
    try {
      const res = await fetch(`${path}?since=${after}`, {
        headers: {Accept: 'text/event-stream', ...authHeaders()},
        signal: controller.signal,
        credentials: 'same-origin',
        cache: 'no-store',
      });
      if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        if (!gotBytes) {
          gotBytes = true;
          failures = 0;
          setMode('live');
        }
        buffer += value.replace(/\r\n?/g, '\n');
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const msg = parseBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (!msg.data) continue;
          const data = JSON.parse(msg.data);
          if (msg.event === 'end') {
            stopped = true;
            onEnd(data.status);
            return;
          }
          deliver(data);
        }
      }
    } catch (err) {
      if (stopped) return;
      failures += 1;
    } finally {
      clearTimeout(firstByte);
    }
    if (stopped) return;
    if (!gotBytes && failures >= STREAM_FAILURES_BEFORE_POLLING) {
      poll();
      return;
    }
    timer = setTimeout(stream, gotBytes ? 500 : 1000 * failures);
  }

  async function poll() {
    if (stopped) return;
    setMode('polling');
    try {
      for (;;) {
        const q = `events?since=${after}&limit=500${runId ? `&runId=${encodeURIComponent(runId)}` : ''}`;
        const page = await api(q);
        for (const event of page.events) deliver(event);
        if (page.events.length < 500 || stopped) break;
      }
      if (runId && !stopped) {
        const run = await api(`runs/${encodeURIComponent(runId)}`);
        if (run.status !== 'Running') {
          stopped = true;
          onEnd(run.status);
          return;
        }
      }
    } catch {
      setMode('offline');
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  if (pollingForced()) poll();
  else stream();
  return () => {
    stopped = true;
    if (controller) controller.abort();
    if (timer) clearTimeout(timer);
  };
}

/** The id after which new events start (skips the history). */
export async function latestEventId() {
  const page = await api('events?tail=true');
  return page.nextAfter;
}

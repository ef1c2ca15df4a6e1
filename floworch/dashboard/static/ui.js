// Shared widgets: toasts, a confirm dialog, a JSON editor, action buttons, error panels.

import {ApiError} from './api.js';
import {h} from './dom.js';

export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const item = h('div', {class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status'}, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 9000 : 5000);
}

export function errorText(err) {
  if (err instanceof ApiError) return err.message;
  if (err instanceof TypeError) return 'The server does not answer (network error); retrying may help.';
  return String(err && err.message ? err.message : err);
}

export function errorPanel(err) {
  return h('div', {class: 'panel error', role: 'alert'}, h('strong', {}, 'Could not load this page. '), errorText(err));
}

/** A modal dialog: resolves true on confirm, false on cancel. `body` is an element or text. */
export function confirmDialog({title, body, confirm = 'Confirm', danger = false}) {
  return new Promise((resolve) => {
    const ok = h('button', {type: 'submit', class: danger ? 'danger' : 'primary', value: 'ok'}, confirm);
    const cancel = h('button', {type: 'button', value: 'cancel'}, 'Cancel');
    const dlg = h('dialog', {class: 'modal', 'aria-labelledby': 'dlg-title'},
      h('form', {method: 'dialog'}, h('h2', {id: 'dlg-title'}, title), h('div', {class: 'dlg-body'}, body),
        h('div', {class: 'row end'}, cancel, ok)));
    let answer = false;
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('submit', () => {
      answer = true;
    });
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(answer);
    });
    document.body.append(dlg);
    dlg.showModal();
    ok.focus();
  });
}

/**
 * A JSON editor: a textarea that checks its text as you type and can format it.
 * Returns {el, value() (throws SyntaxError when invalid), valid()}.
 */
export function jsonEditor({id, label, initial = '{}', rows = 6}) {
  const area = h('textarea', {id, rows, spellcheck: 'false', class: 'mono', 'aria-describedby': `${id}-msg`});
  area.value = initial;
  const msg = h('p', {id: `${id}-msg`, class: 'hint', 'aria-live': 'polite'});
  const check = () => {
    try {
      if (area.value.trim()) JSON.parse(area.value);
      msg.textContent = 'Valid JSON';
      msg.className = 'hint ok';
      area.removeAttribute('aria-invalid');
      return true;
    } catch (err) {
      msg.textContent = `Not JSON yet: ${err.message}`;
      msg.className = 'hint bad';
      area.setAttribute('aria-invalid', 'true');
      return false;
    }
  };
  area.addEventListener('input', check);
  const format = h('button', {type: 'button', class: 'small', onclick: () => {
    if (check() && area.value.trim()) area.value = JSON.stringify(JSON.parse(area.value), null, 2);
  }}, 'Format');
  check();
  const el = h('div', {class: 'json-editor'}, h('div', {class: 'row'}, h('label', {for: id}, label), format), area, msg);
  return {
    el,
    valid: check,
    value: () => (area.value.trim() ? JSON.parse(area.value) : null),
  };
}

/**
 * A button that runs an async action once at a time, shows a toast with the outcome and
 * calls `after` on success.
 */
export function actionButton(text, action, {kind = '', done, after, attrs = {}} = {}) {
  const btn = h('button', {type: 'button', class: kind, ...attrs}, text);
  btn.addEventListener('click', async () => {
    if (btn.disabled) return;
    btn.disabled = true;
    btn.setAttribute('aria-busy', 'true');
    try {
      const result = await action();
      if (result === false) return;
      if (done) toast(typeof done === 'function' ? done(result) : done, 'ok');
      if (after) after(result);
    } catch (err) {
      toast(errorText(err), 'error');
    } finally {
      btn.disabled = false;
      btn.removeAttribute('aria-busy');
    }
  });
  return btn;
}

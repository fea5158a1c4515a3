// Create: a form for every field of CreateJobInput. The payload is
// checked as JSON before anything is sent; the server's refusal is shown
// beside the field it names. The new job opens and runs live.

import { useState } from 'preact/hooks';

import { gql } from './gql.js';
import { BASE, ErrorText, html, navigate } from './ui.js';

const CREATE = 'mutation Create($input: CreateJobInput!) { createJob(input: $input) { id } }';

const EXAMPLE = '{"durationMs": 3000, "progress": true}';

function parsePayload(text) {
  if (text.trim() === '') return { value: undefined };
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { error: `not JSON: ${err.message}` };
  }
}

function intOrNull(s) {
  return s.trim() === '' ? null : Number(s);
}

export function Create({ forbidden }) {
  const [form, setForm] = useState({
    type: '',
    payload: EXAMPLE,
    priority: '',
    runAt: '',
    maxAttempts: '',
    timeoutSeconds: '',
    idempotencyKey: '',
    tags: '',
  });
  const [fieldErrors, setFieldErrors] = useState({});
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const payload = parsePayload(form.payload);
  const set = (k) => (e) => {
    setForm({ ...form, [k]: e.target.value });
    setFieldErrors({ ...fieldErrors, [k]: undefined });
  };

  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    if (payload.error) {
      setFieldErrors({ payload: payload.error });
      document.getElementById('f-payload').focus();
      return;
    }
    const input = { type: form.type.trim() };
    if (payload.value !== undefined) input.payload = payload.value;
    for (const k of ['priority', 'maxAttempts', 'timeoutSeconds']) {
      const n = intOrNull(form[k]);
      if (n !== null) input[k] = n;
    }
    if (form.runAt) input.runAt = new Date(form.runAt).toISOString();
    if (form.idempotencyKey) input.idempotencyKey = form.idempotencyKey;
    const tags = form.tags.split(',').map((t) => t.trim()).filter(Boolean);
    if (tags.length) input.tags = tags;
    setBusy(true);
    try {
      const data = await gql(CREATE, { input });
      navigate(`${BASE}/jobs/${encodeURIComponent(data.createJob.id)}`);
      return;
    } catch (err) {
      if (err.code === 'FORBIDDEN') forbidden();
      // "input.tags[2]: …" or "tags[2]: …": the field's input.
      const field = err.field?.replace(/^input\./, '').replace(/\[\d+\]$/, '');
      if (field && field in form) {
        setFieldErrors({ [field]: err.message });
        document.getElementById(`f-${field}`)?.focus();
      } else setError(err);
    }
    setBusy(false);
  };

  const field = (k, label, input, hint) => html`<div class="field">
    <label for=${`f-${k}`}>${label}</label>
    ${input}
    ${hint && html`<small id=${`h-${k}`}>${hint}</small>`}
    ${fieldErrors[k] && html`<p class="error" role="alert" id=${`e-${k}`}>${fieldErrors[k]}</p>`}
  </div>`;
  const attrs = (k) => ({
    id: `f-${k}`,
    name: k,
    value: form[k],
    onInput: set(k),
    'aria-invalid': fieldErrors[k] ? 'true' : undefined,
    'aria-describedby': `h-${k}${fieldErrors[k] ? ` e-${k}` : ''}`,
  });

  return html`<section aria-labelledby="create-title">
    <h1 id="create-title">Create a job</h1>
    <form class="create" onSubmit=${submit} novalidate>
      ${field('type', 'Type', html`<input ...${attrs('type')} required autocomplete="off" />`, 'Letters, digits and . _ : - (at most 128). The simulated handler serves any type.')}
      ${field(
        'payload',
        'Payload (JSON)',
        html`<textarea ...${attrs('payload')} rows="5" spellcheck="false" class="mono"></textarea>`,
        payload.error
          ? html`<span class="warn">Payload ${payload.error}</span>`
          : 'Any JSON value, or empty. Simulated handler: durationMs, fail, progress, failTimes.',
      )}
      <div class="row3">
        ${field('priority', 'Priority', html`<input ...${attrs('priority')} type="number" min="-100" max="100" step="1" placeholder="0" />`, '−100 to 100; higher runs first.')}
        ${field('maxAttempts', 'Max attempts', html`<input ...${attrs('maxAttempts')} type="number" min="1" max="100" step="1" placeholder="server default" />`, '1 to 100.')}
        ${field('timeoutSeconds', 'Timeout (seconds)', html`<input ...${attrs('timeoutSeconds')} type="number" min="1" max="86400" step="1" placeholder="server default" />`, 'Per attempt, 1 to 86,400.')}
      </div>
      ${field('runAt', 'Run at', html`<input ...${attrs('runAt')} type="datetime-local" step="1" />`, 'Not before this local time; now when empty.')}
      ${field('idempotencyKey', 'Idempotency key', html`<input ...${attrs('idempotencyKey')} autocomplete="off" maxlength="255" />`, 'While a job with this key exists, the same key returns it.')}
      ${field('tags', 'Tags', html`<input ...${attrs('tags')} autocomplete="off" placeholder="billing, eu" />`, 'Comma-separated, at most 10.')}
      <${ErrorText} error=${error} id="create-error" />
      <button type="submit" id="create-submit" disabled=${busy}>Create job</button>
    </form>
  </section>`;
}

// The shell: sign-in when the server asks for a credential, the
// navigation, the live connection indicator and the view of the URL.

import { useEffect, useState } from 'preact/hooks';

import { auth, gql, live, signals } from './gql.js';
import { BASE, html, navigate, useLiveState, useLocation } from './ui.js';
import { Overview } from './overview.js';
import { Jobs } from './jobs.js';
import { Job } from './job.js';
import { Create } from './create.js';
import { Periodic } from './periodic.js';
import { Types } from './types.js';

const LIVE_LABELS = {
  connecting: 'Connecting…',
  connected: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

/**
 * Whether the credential may change jobs. The API has no field naming the
 * caller's role, so the dashboard asks for something no role may be
 * refused except a read-only one: deleting a job that does not exist is
 * FORBIDDEN for a viewer and NOT_FOUND for everyone else.
 */
async function probeReadOnly() {
  try {
    await gql('mutation RoleProbe { deleteJob(id: "dashboard-role-probe") }');
    return false;
  } catch (err) {
    return err.code === 'FORBIDDEN';
  }
}

function LiveIndicator() {
  const state = useLiveState();
  return html`<p class=${`live live-${state}`} role="status" aria-live="polite" id="live" data-state=${state}>
    <span class="dot" aria-hidden="true"></span>${LIVE_LABELS[state]}
  </p>`;
}

function SignIn({ refused, onToken }) {
  const [token, setToken] = useState('');
  const submit = (event) => {
    event.preventDefault();
    if (token.trim()) onToken(token.trim());
  };
  return html`<main class="signin">
    <h1>Sign in</h1>
    <p>This server has access control on. Paste an API token (or a JWT); it is kept in this tab only.</p>
    ${refused && html`<p class="error" role="alert">The server refused that credential.</p>`}
    <form onSubmit=${submit}>
      <label for="token">Token</label>
      <input id="token" type="password" autocomplete="off" value=${token} onInput=${(e) => setToken(e.target.value)} required />
      <button type="submit">Sign in</button>
    </form>
  </main>`;
}

const NAV = [
  ['Overview', `${BASE}/`],
  ['Jobs', `${BASE}/jobs`],
  ['Types', `${BASE}/types`],
  ['Periodic', `${BASE}/periodic`],
  ['Create', `${BASE}/create`],
];

export function App() {
  const loc = useLocation();
  const [session, setSession] = useState({ phase: 'checking' });

  const check = async () => {
    try {
      await gql('query Check { stats { pending } }');
      const signedIn = Boolean(auth.token);
      setSession({ phase: 'ready', signedIn, readOnly: signedIn && (await probeReadOnly()) });
    } catch (err) {
      if (err.code === 'UNAUTHENTICATED') setSession({ phase: 'signin', refused: Boolean(auth.token) });
      else setSession({ phase: 'ready', signedIn: Boolean(auth.token), readOnly: false, startError: err });
    }
  };

  useEffect(() => {
    check();
    const refused = () => setSession((s) => (s.phase === 'signin' ? s : { phase: 'signin', refused: Boolean(auth.token) }));
    signals.addEventListener('unauthenticated', refused);
    return () => signals.removeEventListener('unauthenticated', refused);
  }, []);

  const signIn = (token) => {
    auth.token = token;
    setSession({ phase: 'checking' });
    live.reconnectNow();
    check();
  };
  const signOut = () => {
    auth.token = '';
    setSession({ phase: 'signin', refused: false });
    live.reconnectNow();
  };
  // A view reports FORBIDDEN: the credential is read-only after all.
  const forbidden = () => setSession((s) => ({ ...s, readOnly: true }));

  if (session.phase === 'signin') return html`<${SignIn} refused=${session.refused} onToken=${signIn} />`;
  if (session.phase === 'checking') return html`<p class="loading">Loading…</p>`;

  const path = loc.path.replace(/\/+$/, '') || BASE;
  let view;
  const props = { session, forbidden, query: loc.query };
  if (path === BASE) view = html`<${Overview} ...${props} />`;
  else if (path === `${BASE}/jobs`) view = html`<${Jobs} ...${props} />`;
  else if (path.startsWith(`${BASE}/jobs/`)) {
    const id = decodeURIComponent(path.slice(`${BASE}/jobs/`.length));
    view = html`<${Job} key=${id} id=${id} ...${props} />`;
  } else if (path === `${BASE}/create`) view = html`<${Create} ...${props} />`;
  else if (path === `${BASE}/types`) view = html`<${Types} ...${props} />`;
  else if (path === `${BASE}/periodic`) view = html`<${Periodic} ...${props} />`;
  else view = html`<section><h1>Not found</h1><p>No page at ${loc.path}. <a href=${`${BASE}/`}>Overview</a></p></section>`;

  const current = path === BASE ? `${BASE}/` : NAV.find(([, href]) => href !== `${BASE}/` && path.startsWith(href))?.[1];
  return html`<div class="shell">
    <header>
      <a class="brand" href=${`${BASE}/`}>Job queue</a>
      <nav aria-label="Main">
        <ul>
          ${NAV.filter(([name]) => !(name === 'Create' && session.readOnly)).map(
            ([name, href]) => html`<li><a href=${href} aria-current=${current === href ? 'page' : undefined}>${name}</a></li>`,
          )}
        </ul>
      </nav>
      <${LiveIndicator} />
      ${session.signedIn &&
      html`<p class="who">
        Signed in${session.readOnly ? ' (read-only)' : ''}
        <button type="button" class="link" onClick=${signOut}>Sign out</button>
      </p>`}
    </header>
    ${session.startError && html`<p class="error" role="alert">${session.startError.message}</p>`}
    <main id="main">${view}</main>
  </div>`;
}

export { navigate };

// The shell: sign-in when the server asks for a credential, the
// navigation, who is signed in (and what the role is offered), the live
// connection indicator and the view of the URL.

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

const VIEWER = 'query Viewer { viewer { name role authenticated } }';

/**
 * What the caller's role may be offered, after the server's access rules
 * (README, "Roles"): a viewer changes nothing; a user acts on its own
 * jobs but neither reads periodic jobs nor has the operator's controls
 * (job types, periodic jobs); an admin (and anyone with AUTH=none) has
 * everything. The server enforces them whatever the page offers.
 */
function permissionsOf(viewer) {
  const role = viewer?.role ?? 'ADMIN';
  return { canWrite: role !== 'VIEWER', canOperate: role === 'ADMIN', seesPeriodic: role !== 'USER' };
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

  // Asks the server who the credential is; the views offer what its
  // role may do.
  const check = async () => {
    try {
      const { viewer } = await gql(VIEWER);
      setSession({ phase: 'ready', viewer, ...permissionsOf(viewer) });
    } catch (err) {
      if (err.code === 'UNAUTHENTICATED') setSession({ phase: 'signin', refused: Boolean(auth.token) });
      else setSession({ phase: 'ready', viewer: null, ...permissionsOf(null), startError: err });
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
  // A view reports FORBIDDEN: the role may have changed since (a tokens
  // file reloaded); ask again.
  const forbidden = async () => {
    try {
      const { viewer } = await gql(VIEWER);
      setSession((s) => (s.phase === 'ready' ? { ...s, viewer, ...permissionsOf(viewer) } : s));
    } catch {
      // The view shows its own error; a refused credential signs out.
    }
  };

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
          ${NAV.filter(([name]) => (name !== 'Create' || session.canWrite) && (name !== 'Periodic' || session.seesPeriodic)).map(
            ([name, href]) => html`<li><a href=${href} aria-current=${current === href ? 'page' : undefined}>${name}</a></li>`,
          )}
        </ul>
      </nav>
      <${LiveIndicator} />
      ${session.viewer?.authenticated &&
      html`<p class="who" data-role=${session.viewer.role}>
        Signed in${session.viewer.name ? html` as <strong class="who-name">${session.viewer.name}</strong>` : ''} (<span class="who-role">${session.viewer.role.toLowerCase()}</span>)
        <button type="button" class="link" onClick=${signOut}>Sign out</button>
      </p>`}
    </header>
    ${session.startError && html`<p class="error" role="alert">${session.startError.message}</p>`}
    <main id="main">${view}</main>
  </div>`;
}

export { navigate };

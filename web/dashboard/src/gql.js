// The dashboard's only way to the server: the public GraphQL API at
// /query, over HTTP for queries and mutations and over a websocket
// (graphql-transport-ws) for subscriptions.

const ENDPOINT = '/query';
const TOKEN_KEY = 'jobqueue.token';

/** Signals to the app: 'unauthenticated' when the server refuses the credential. */
export const signals = new EventTarget();

/** The bearer token, kept in this tab's session storage. */
export const auth = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** An error the server answered with; `code` is its extensions.code. */
export class ApiError extends Error {
  constructor(message, code, field) {
    super(message);
    this.code = code;
    // The input field a BAD_USER_INPUT message names ("tags[2]: …").
    this.field = field;
  }
}

function apiError(e) {
  const code = e.extensions?.code || 'ERROR';
  const field = code === 'BAD_USER_INPUT' ? /^([A-Za-z.]+(?:\[\d+\])?(?:\.[A-Za-z]+)?): /.exec(e.message)?.[1] : undefined;
  return new ApiError(e.message, code, field);
}

/** Runs a query or mutation; resolves to its data or rejects with an ApiError. */
export async function gql(query, variables = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  let res;
  try {
    res = await fetch(ENDPOINT, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  } catch {
    throw new ApiError('The server cannot be reached.', 'NETWORK');
  }
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(`The server answered HTTP ${res.status}.`, `HTTP_${res.status}`);
  }
  if (body.errors?.length) {
    const err = apiError(body.errors[0]);
    if (err.code === 'UNAUTHENTICATED') signals.dispatchEvent(new Event('unauthenticated'));
    throw err;
  }
  return body.data;
}

/** The websocket close code of a refused credential (graphql-transport-ws). */
const CLOSE_FORBIDDEN = 4403;

/**
 * One websocket shared by every subscription of the page, kept open and
 * reconnected with backoff. `state` is 'connecting', 'connected',
 * 'reconnecting' (lost, retrying) or 'offline' (lost for more than
 * OFFLINE_AFTER_MS, or the browser is offline; still retrying). Events:
 * 'state' on every change of state, 'reconnected' once subscriptions are
 * back after a loss (what was shown may be stale: read it again).
 */
export class Live extends EventTarget {
  static OFFLINE_AFTER_MS = 8000;

  constructor(url) {
    super();
    this.url = url;
    this.state = 'connecting';
    this.subs = new Map();
    this.nextId = 1;
    this.ws = null;
    this.acked = false;
    this.everConnected = false;
    this.retries = 0;
    this.lostAt = 0;
    this.timer = 0;
    addEventListener('online', () => this.reconnectNow());
    addEventListener('offline', () => this.setState('offline'));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new Event('state'));
  }

  /**
   * Subscribes; sink gets next(data), error(ApiError) and complete(). The
   * subscription is sent again after every reconnect until it ends or the
   * returned function is called.
   */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    this.subs.set(id, { query, variables, sink });
    if (this.acked) this.send({ id, type: 'subscribe', payload: { query, variables } });
    else if (!this.ws) this.connect();
    return () => {
      if (this.subs.delete(id) && this.acked) this.send({ id, type: 'complete' });
    };
  }

  /** Drops the connection and opens a new one at once (a new token). */
  reconnectNow() {
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.close(1000);
      this.lost();
    }
    this.connect();
  }

  send(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  connect() {
    clearTimeout(this.timer);
    const ws = new WebSocket(this.url, 'graphql-transport-ws');
    // The credential this socket presents: a refusal of an older one
    // (the token changed meanwhile) is no reason to stop.
    const token = auth.token;
    this.ws = ws;
    ws.onopen = () => {
      const payload = token ? { Authorization: `Bearer ${token}` } : {};
      ws.send(JSON.stringify({ type: 'connection_init', payload }));
    };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.lost();
      if (event.code === CLOSE_FORBIDDEN && token === auth.token) {
        this.setState('offline');
        signals.dispatchEvent(new Event('unauthenticated'));
        return; // until a new token: reconnectNow
      }
      const delay = Math.min(500 * 2 ** this.retries, 5000) * (0.75 + Math.random() / 2);
      this.retries++;
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  lost() {
    if (this.acked) this.lostAt = Date.now();
    this.acked = false;
    const offline = !navigator.onLine || (this.lostAt && Date.now() - this.lostAt > Live.OFFLINE_AFTER_MS);
    this.setState(offline ? 'offline' : this.everConnected ? 'reconnecting' : 'connecting');
  }

  receive(msg) {
    switch (msg.type) {
      case 'connection_ack': {
        this.acked = true;
        this.retries = 0;
        for (const [id, s] of this.subs) this.send({ id, type: 'subscribe', payload: { query: s.query, variables: s.variables } });
        const again = this.everConnected;
        this.everConnected = true;
        this.setState('connected');
        if (again) this.dispatchEvent(new Event('reconnected'));
        break;
      }
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'next':
        this.subs.get(msg.id)?.sink.next(msg.payload.data, msg.payload.errors);
        break;
      case 'error': {
        const s = this.subs.get(msg.id);
        this.subs.delete(msg.id);
        s?.sink.error?.(apiError(msg.payload?.[0] ?? { message: 'subscription failed' }));
        break;
      }
      case 'complete': {
        const s = this.subs.get(msg.id);
        this.subs.delete(msg.id);
        s?.sink.complete?.();
        break;
      }
    }
  }
}

/** The page's live connection. */
export const live = new Live(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${ENDPOINT}`);

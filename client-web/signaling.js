// The signaling connection: one WebSocket to /ws speaking docs/protocol.md.
//
// It authenticates with the stored token, reconnects on its own when the
// connection drops (with a growing delay), and asks for a fresh token when
// the server refuses the stored one.
//
// Every `welcome` carries a `resume_token`. After a dropped connection the
// next `auth` sends it as `resume`: within the server's grace period the
// session goes on (`resumed: true`, calls untouched, the messages sent
// meanwhile follow); later it signs in afresh (`resumed: false`).
//
// Closing on purpose (signing out, a new name, the page going away) sends a
// clean close, code 1000: the server ends that session at once instead of
// keeping it for a resume. Only a connection that drops is retried.
//
// Every close the server makes is a drop too, resumed like any other. A
// node being restarted closes with 1012 ("service restart"): the next try
// goes at once, since the load balancer sends it to another node. 1013
// ("try again later") waits as usual.

const RETRY_DELAYS_MS = [250, 1000, 2000, 3000, 5000];
/** While a session may still be resumed, retry at least this often. */
const RESUME_RETRY_MAX_MS = 2000;
/** The server's default reconnect grace; it does not tell its own. */
export const RESUME_GRACE_MS = 20000;
/** WebSocket close code of a deliberate close (RFC 6455 "normal closure"). */
const CLEAN_CLOSE = 1000;
/** The server's close code of a node being restarted (IANA "Service Restart"). */
const SERVICE_RESTART = 1012;
/**
 * Close code of a drop this side makes (`simulateDrop`, a sign-in the
 * server could not take): a code of the application's own range, so the
 * server treats it as a lost connection, not as signing out.
 */
const DROP = 4000;

export class Signaling {
  /**
   * @param {object} opts
   * @param {() => Promise<string>} opts.token the stored token (or a new one)
   * @param {() => Promise<string>} opts.freshToken a new token, the stored one was refused
   * @param {() => string|null} [opts.identityKey] this device's public identity key, sent in `auth`
   * @param {(msg: object) => void} opts.onMessage every server message after `welcome`
   * @param {(state: string, detail?: object) => void} opts.onState
   *   `connecting`, `online` (detail: welcome, with `resumed`), `lost` (will retry), `replaced`, `failed`,
   *   `idle` (closed on purpose)
   */
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    this.state = 'idle';
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = false;
    /** Counts close() calls: a connect() begun before one gives up. */
    this.generation = 0;
    this.watchingNetwork = false;
    this.refreshNext = false;
    this.wasOnline = false;
    /** From the latest `welcome`: sent as `resume` after a drop. */
    this.resumeToken = null;
    /** When the last connection dropped (epoch ms), while not back. */
    this.lostAt = null;
    /** Test hook: connection attempts fail until then (epoch ms). */
    this.offlineUntil = 0;
    /** Test hook: {ws, code}: that socket's close is handled as if the server closed with `code`. */
    this.dropAs = null;
    /** Counts, for diagnostics and the tests. */
    this.resumes = 0;
    this.freshSignIns = 0;
  }

  start() {
    this.stopped = false;
    if (!this.watchingNetwork) {
      this.watchingNetwork = true;
      window.addEventListener('online', () => this.retryNow());
    }
    this.connect();
  }

  /**
   * Closes the connection on purpose (signing out, the page going away):
   * a clean close, so the server ends the session at once, and no retry.
   * `start()` signs in again, afresh.
   */
  close(reason = 'signed out') {
    this.stopped = true;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = null;
    this.resumeToken = null;
    this.lostAt = null;
    if (ws) {
      // Its close event must not count as a drop.
      ws.onclose = null;
      ws.onmessage = null;
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(CLEAN_CLOSE, reason);
    }
    if (this.state !== 'idle') this.setState('idle');
  }

  /** Signs in again now with a new token (a new name, or a replaced session): nothing to resume. */
  restart({ fresh = false } = {}) {
    this.close('signing in again');
    this.stopped = false;
    this.attempt = 0;
    this.refreshNext = fresh;
    this.resumeToken = null;
    this.lostAt = null;
    this.connect();
  }

  retryNow() {
    if (this.stopped || this.state === 'online' || this.state === 'connecting') return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  /**
   * Test and debug hook: the connection drops as if the network went away
   * (no sign-out), and stays unreachable for `offlineMs`. The client then
   * reconnects and resumes like after any other drop. With `code`, the drop
   * is handled as a close by the server with that code (e.g. 1012).
   */
  simulateDrop({ offlineMs = 0, code = null } = {}) {
    this.offlineUntil = Date.now() + offlineMs;
    const ws = this.ws;
    if (ws) {
      this.dropAs = code === null ? null : { ws, code };
      ws.close(DROP, 'simulated drop');
    } else {
      this.retryNow();
    }
  }

  /** Signed in on an open socket: send() will work. */
  connected() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN && this.state === 'online';
  }

  /** Sends one message; false when not connected. */
  send(msg) {
    if (!this.connected()) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** True while a dropped session may still be resumed (by the default grace period). */
  mayResume() {
    return !!this.resumeToken && (this.lostAt === null || Date.now() - this.lostAt < RESUME_GRACE_MS);
  }

  setState(state, detail) {
    this.state = state;
    this.opts.onState(state, detail);
  }

  async connect() {
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    this.setState('connecting');
    if (Date.now() < this.offlineUntil) {
      // Simulated network outage (see simulateDrop).
      this.scheduleRetry();
      return;
    }
    const generation = this.generation;
    let token;
    try {
      token = this.refreshNext ? await this.opts.freshToken() : await this.opts.token();
      this.refreshNext = false;
    } catch (err) {
      if (generation === this.generation) this.failed(err);
      return;
    }
    if (this.stopped || generation !== this.generation) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    let authed = false;
    ws.onopen = () => {
      const auth = { type: 'auth', token };
      if (this.resumeToken) auth.resume = this.resumeToken;
      // This device's identity key: its calls are end-to-end encrypted.
      const identityKey = this.opts.identityKey ? this.opts.identityKey() : null;
      if (identityKey) auth.identity_key = identityKey;
      ws.send(JSON.stringify(auth));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!authed) {
        if (msg.type === 'welcome') {
          authed = true;
          this.attempt = 0;
          this.wasOnline = true;
          this.lostAt = null;
          this.resumeToken = typeof msg.resume_token === 'string' && msg.resume_token ? msg.resume_token : null;
          if (msg.resumed) this.resumes += 1;
          else this.freshSignIns += 1;
          this.setState('online', msg);
          return;
        }
        if (msg.type === 'error' && msg.code === 'invalid_token') {
          // Expired, or signed by a server that has since restarted.
          this.refreshNext = true;
          return;
        }
        if (msg.type === 'error' && msg.code === 'unavailable') {
          // The server could not reach the rest of its cluster to sign us
          // in, and no welcome will come: a drop, tried again as usual.
          ws.close(DROP, 'sign-in unavailable');
          return;
        }
      }
      if (msg.type === 'error' && msg.code === 'replaced') {
        this.stopped = true;
        this.resumeToken = null;
        ws.onclose = null;
        this.ws = null;
        this.setState('replaced');
        return;
      }
      this.opts.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const code = this.dropAs && this.dropAs.ws === ws ? this.dropAs.code : ev.code;
      this.dropAs = null;
      if (this.stopped) return;
      if (authed && this.lostAt === null) this.lostAt = Date.now();
      // A node restarting: another one takes the session, so no wait (only
      // once in a row: `attempt` is back to 0 only after a welcome).
      this.scheduleRetry({ now: code === SERVICE_RESTART && this.attempt === 0 });
    };
    ws.onerror = () => {
      // onclose follows.
    };
  }

  failed(err) {
    // Getting a token failed: the server is down, or refused the name.
    if (err && err.permanent) {
      this.stopped = true;
      this.setState('failed', err);
      return;
    }
    this.scheduleRetry();
  }

  /** Connects again after the usual delay (`now`: at once). */
  scheduleRetry({ now = false } = {}) {
    let delay = now || (this.refreshNext && this.attempt < 2) ? 0 : RETRY_DELAYS_MS[Math.min(this.attempt, RETRY_DELAYS_MS.length - 1)];
    if (this.mayResume()) delay = Math.min(delay, RESUME_RETRY_MAX_MS);
    this.attempt += 1;
    this.setState('lost');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}

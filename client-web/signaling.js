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

const RETRY_DELAYS_MS = [250, 1000, 2000, 3000, 5000];
/** While a session may still be resumed, retry at least this often. */
const RESUME_RETRY_MAX_MS = 2000;
/** The server's default reconnect grace; it does not tell its own. */
export const RESUME_GRACE_MS = 20000;
/** WebSocket close code of a deliberate close (RFC 6455 "normal closure"). */
const CLEAN_CLOSE = 1000;
/**
 * Close code of `simulateDrop`: a code of the application's own range, so
 * the server treats it as a lost connection, not as signing out.
 */
const SIMULATED_DROP = 4000;

export class Signaling {
  /**
   * @param {object} opts
   * @param {() => Promise<string>} opts.token the stored token (or a new one)
   * @param {() => Promise<string>} opts.freshToken a new token, the stored one was refused
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
   * reconnects and resumes like after any other drop.
   */
  simulateDrop({ offlineMs = 0 } = {}) {
    this.offlineUntil = Date.now() + offlineMs;
    const ws = this.ws;
    if (ws) ws.close(SIMULATED_DROP, 'simulated drop');
    else this.retryNow();
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
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (authed && this.lostAt === null) this.lostAt = Date.now();
      this.scheduleRetry();
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

  scheduleRetry() {
    let delay = this.refreshNext && this.attempt < 2 ? 0 : RETRY_DELAYS_MS[Math.min(this.attempt, RETRY_DELAYS_MS.length - 1)];
    if (this.mayResume()) delay = Math.min(delay, RESUME_RETRY_MAX_MS);
    this.attempt += 1;
    this.setState('lost');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}

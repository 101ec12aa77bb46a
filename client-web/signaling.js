// The signaling connection: one WebSocket to /ws speaking docs/protocol.md.
//
// It authenticates with the stored token, reconnects on its own when the
// connection drops (with a growing delay), and asks for a fresh token when
// the server refuses the stored one.

const RETRY_DELAYS_MS = [250, 1000, 2000, 3000, 5000];

export class Signaling {
  /**
   * @param {object} opts
   * @param {() => Promise<string>} opts.token the stored token (or a new one)
   * @param {() => Promise<string>} opts.freshToken a new token, the stored one was refused
   * @param {(msg: object) => void} opts.onMessage every server message after `welcome`
   * @param {(state: string, detail?: object) => void} opts.onState
   *   `connecting`, `online` (detail: welcome), `lost` (will retry), `replaced`, `failed`
   */
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    this.state = 'idle';
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = false;
    this.refreshNext = false;
    this.wasOnline = false;
  }

  start() {
    this.stopped = false;
    this.connect();
    window.addEventListener('online', () => this.retryNow());
  }

  /** Drops the connection for good (e.g. before signing in under a new name). */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.setState('idle');
  }

  /** Reconnects now with a new token (a new name, or a replaced session). */
  restart({ fresh = false } = {}) {
    this.stop();
    this.stopped = false;
    this.attempt = 0;
    this.refreshNext = fresh;
    this.connect();
  }

  retryNow() {
    if (this.stopped || this.state === 'online' || this.state === 'connecting') return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  /** Sends one message; false when not connected. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== 'online') return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  setState(state, detail) {
    this.state = state;
    this.opts.onState(state, detail);
  }

  async connect() {
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    this.setState('connecting');
    let token;
    try {
      token = this.refreshNext ? await this.opts.freshToken() : await this.opts.token();
      this.refreshNext = false;
    } catch (err) {
      this.failed(err);
      return;
    }
    if (this.stopped) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    let authed = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token }));
    ws.onmessage = (ev) => {
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
    const delay = this.refreshNext && this.attempt < 2 ? 0 : RETRY_DELAYS_MS[Math.min(this.attempt, RETRY_DELAYS_MS.length - 1)];
    this.attempt += 1;
    this.setState('lost');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}

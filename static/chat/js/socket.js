// One websocket per tab that reconnects by itself with capped exponential backoff.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
const STABLE_MS = 5_000;

/**
 * A websocket to `path` on this page's host (ws: or wss: to match the page).
 * handlers: onOpen(), onFrame(object), onClose({wasOpen, failures, code}).
 * After a drop it retries after 0.5 s, 1 s, 2 s ... up to 10 s, each delay
 * jittered to between half and all of it so that a restarted server is not
 * hit by every tab at the same instant.
 */
export class ChatSocket {
  constructor(path, handlers) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}${path}`;
    this.handlers = handlers;
    this.ws = null;
    this.failures = 0;
    this.everOpened = false;
    this.timer = null;
    this.stopped = false;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    let opened = false;
    let openedAt = 0;
    ws.addEventListener("open", () => {
      opened = true;
      openedAt = Date.now();
      this.everOpened = true;
      this.handlers.onOpen();
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not ours to show; the protocol only sends JSON
      }
      if (typeof frame === "string") {
        // Protocol v2: a bare JSON string is the next delta of the answer being written.
        this.handlers.onFrame({ type: "delta", compact: true, text: frame });
      } else if (frame && typeof frame === "object") {
        this.handlers.onFrame(frame);
      }
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // A socket that lived a while resets the backoff; one that failed or
      // was dropped at once (server refusing us) keeps backing off.
      if (opened && Date.now() - openedAt > STABLE_MS) this.failures = 0;
      else this.failures += 1;
      this.handlers.onClose({ wasOpen: opened, failures: this.failures, code: event.code });
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    if (this.stopped || this.timer) return;
    const cap = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.max(0, this.failures - 1));
    const delay = cap / 2 + Math.random() * (cap / 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  /** Try at once (the network came back, the tab became visible). */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    this.failures = 0;
    this.connect();
  }

  /** Send a frame; false when the socket is not open (nothing is queued). */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Give up for good (e.g. the session ended). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }
}

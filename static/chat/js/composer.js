// The message box: Enter sends, Shift+Enter breaks the line; Send turns into Stop.
// A message sent while the socket is not open (still connecting, or offline)
// stays in the box, queued, and goes out as soon as the connection is back.

import { byId, format } from "./dom.js";

export class Composer {
  /**
   * onSend(text) returns true when the text left (the box is then cleared);
   * onStop() asks the server to stop the answer being written;
   * onQueued() tells the person their message waits for the connection.
   */
  constructor({ strings, maxChars, onSend, onStop, onError, onQueued }) {
    Object.assign(this, { strings, maxChars, onSend, onStop, onError, onQueued });
    this.form = byId("composer");
    this.input = byId("prompt");
    this.button = byId("send");
    this.counter = byId("counter");
    this.mode = "send"; // send | stop | wait
    this.online = false;
    this.queued = false; // sent while offline: goes out once connected

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      event.preventDefault();
      if (this.mode === "send") this.submit();
    });
    this.input.addEventListener("input", () => this.refresh());
    this.refresh();
  }

  submit() {
    if (this.mode === "stop") {
      this.onStop();
      return;
    }
    if (this.mode !== "send") return;
    const text = this.input.value;
    if (!text.trim()) return;
    if (text.length > this.maxChars) {
      this.onError(format(this.strings.tooLong, { count: text.length, max: this.maxChars }));
      return;
    }
    if (!this.online) {
      this.queued = true;
      this.onQueued();
      this.refresh();
      return;
    }
    this.queued = false;
    if (this.onSend(text)) {
      this.input.value = "";
      this.refresh();
    }
  }

  /** Send the queued message once the socket is open and no answer is being written. */
  flush() {
    if (!this.queued || !this.online || this.mode !== "send") return;
    this.queued = false;
    this.submit();
  }

  /** Put text back (a send that failed) unless the person already typed something new. */
  restore(text) {
    if (this.input.value.trim()) return;
    this.input.value = text;
    this.refresh();
  }

  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    this.refresh();
  }

  setOnline(online) {
    this.online = online;
    this.refresh();
  }

  focus() {
    // On touch screens focusing pops the keyboard over the answer; don't.
    if (window.matchMedia("(pointer: fine)").matches) this.input.focus({ preventScroll: true });
  }

  refresh() {
    const input = this.input;
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight}px`;
    const length = input.value.length;
    const stop = this.mode !== "send";
    // Typing over a queued message keeps it queued; emptying the box cancels it.
    if (!input.value.trim()) this.queued = false;
    this.button.classList.toggle("is-stop", stop);
    this.button.classList.toggle("is-queued", this.queued && !stop);
    const label = stop ? this.strings.stop : this.strings.send;
    this.button.setAttribute("aria-label", label);
    this.button.title = label;
    if (stop) this.button.disabled = this.mode === "wait" || !this.online;
    else this.button.disabled = !input.value.trim();
    const near = length > this.maxChars * 0.9;
    this.counter.hidden = !near;
    this.counter.textContent = near ? `${length} / ${this.maxChars}` : "";
    this.counter.classList.toggle("is-over", length > this.maxChars);
  }
}

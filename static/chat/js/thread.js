// The open conversation: message state from the protocol frames, and its DOM.
//
// State changes (delta, snapshot, done ...) only mark a message dirty; the DOM
// is brought up to date at most once per animation frame, so a fast stream
// re-renders its Markdown ~60 times a second at most, not once per delta.

import { cloneTemplate, copyText, format } from "./dom.js";
import { loadChoices, saveChoices } from "./branches.js";
import { flashLabel, isLive, paintMessage } from "./message.js";

const NEAR_BOTTOM_PX = 96;

/**
 * Messages form a tree through `parent` (regenerations are siblings). The
 * thread shows one path through it: at each fork the branch the person picked
 * with the pager, otherwise the branch holding the newest message, which is
 * where the server attaches the next message.
 */
const forkKey = (m, messages) => (m.parent != null && messages.has(m.parent) ? `p${m.parent}` : "root");

export class Thread {
  /** onAction(action, {id, ref}) is called for retry / regenerate / resend / discard. */
  constructor({ container, scroller, jump, emptyState, strings, onAction }) {
    Object.assign(this, { container, scroller, jump, emptyState, strings, onAction });
    this.messages = new Map(); // id → {id, role, status, content, error, parent, seq}
    this.pending = new Map(); // ref → {ref, content, state: sending|uncertain|unsent, el}
    this.choice = new Map(); // slot key → id of the answer shown
    this.conversation = null; // id of the conversation shown, for its saved branch choices
    this.elements = new Map(); // id → <article>
    this.dirty = new Set();
    this.layoutNeeded = false;
    this.frame = 0;
    this.stick = true;
    this.loading = false;
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    jump.addEventListener("click", () => this.scrollToEnd({ smooth: true }));
    container.addEventListener("click", (event) => this.onClick(event));
    container.addEventListener("submit", (event) => this.onEditSubmit(event));
    container.addEventListener("keydown", (event) => this.onEditKey(event));
  }

  // --- state from frames -------------------------------------------------

  /**
   * Replace everything with a `history` (or the embedded first paint). Elements
   * of messages we already show are kept, so a re-open after a reconnect or a
   * gap does not flicker or move the reader's scroll position.
   */
  load(messages) {
    const known = new Set(this.messages.keys());
    const fresh = known.size === 0;
    const ids = new Set(messages.map((m) => m.id));
    for (const id of this.elements.keys()) if (!ids.has(id)) this.elements.delete(id);
    this.messages.clear();
    for (const data of messages) this.messages.set(data.id, { ...data, seq: null });
    for (const id of ids) this.dirty.add(id);
    const conversation = messages[0]?.conversation ?? null;
    if (fresh && conversation !== null) {
      this.conversation = conversation;
      this.choice = loadChoices(conversation);
    }
    this.loading = false;
    this.reconcilePending(messages, known);
    if (fresh) this.stick = true;
    this.schedule(true);
  }

  /** Empty thread (new chat, or while a conversation's history is on its way). */
  clear({ loading = false } = {}) {
    this.messages.clear();
    this.elements.clear();
    this.choice.clear();
    this.conversation = null;
    this.pending.clear();
    this.dirty.clear();
    this.container.replaceChildren();
    this.loading = loading;
    this.stick = true;
    this.schedule(true);
  }

  has(id) {
    return this.messages.has(id);
  }

  /** A `message` frame: a new message, or a fresh copy of one we show. */
  upsert(data) {
    const current = this.messages.get(data.id);
    if (current) {
      // A copy of a message we already follow: keep the streamed text and seq.
      if (!isLive(data) || !isLive(current)) Object.assign(current, data);
    } else {
      this.messages.set(data.id, { ...data, seq: null });
      this.conversation = data.conversation; // a new chat learns its id from its first message
      this.choice.clear(); // a new message is shown at once, on the newest branch
      saveChoices(this.conversation, this.choice);
    }
    this.dirty.add(data.id);
    this.schedule(true);
  }

  /** Returns "ok", "gap" (resync needed), "stale" (already had it) or "unknown". */
  delta({ message, seq, text, reset }) {
    const m = this.messages.get(message);
    if (!m) return "unknown";
    if (!isLive(m)) return "stale";
    const last = m.seq ?? 0;
    if (seq <= last) return "stale";
    if (seq !== last + 1) return "gap";
    m.content = reset ? text : m.content + text;
    m.seq = seq;
    m.status = "streaming";
    this.touch(m.id);
    return "ok";
  }

  snapshot({ message, seq, content }) {
    const m = this.messages.get(message);
    if (!m || !isLive(m)) return;
    m.content = content;
    m.seq = seq;
    if (content) m.status = "streaming";
    this.touch(m.id);
  }

  /** `done`: its content is authoritative. */
  done({ message, status, content, error, model }) {
    const m = this.messages.get(message);
    if (!m) return;
    Object.assign(m, { status, content: content ?? m.content, error: error ?? null });
    if (model) m.model = model;
    this.touch(m.id);
  }

  /** The answer being written in this conversation, if any. */
  liveAnswer() {
    let found = null;
    for (const m of this.messages.values()) {
      if (m.role === "assistant" && isLive(m)) found = m;
    }
    return found;
  }

  // --- messages sent from this tab, not yet confirmed ----------------------

  addPending(ref, content) {
    const el = cloneTemplate("tpl-user");
    el.classList.add("is-pending");
    el.dataset.ref = ref;
    el.querySelector(".msg-text").textContent = content;
    this.pending.set(ref, { ref, content, state: "sending", el });
    this.stick = true;
    this.schedule(true);
  }

  hasSending() {
    for (const p of this.pending.values()) if (p.state === "sending") return true;
    return false;
  }

  /** The server saved it: the real `message` frame replaces the placeholder. */
  confirmPending(ref) {
    if (this.pending.delete(ref)) this.schedule(true);
  }

  getPending(ref) {
    return this.pending.get(ref);
  }

  /** Refused by the server, or lost with the connection: offer to send it again. */
  failPending(ref, note) {
    const p = this.pending.get(ref);
    if (!p) return;
    p.state = "unsent";
    p.el.classList.remove("is-pending");
    p.el.classList.add("is-unsent");
    const box = p.el.querySelector(".msg-note");
    box.querySelector(".msg-note-text").textContent = note;
    box.hidden = false;
  }

  /** The socket dropped: whatever was in flight may or may not have arrived. */
  markUncertain() {
    for (const p of this.pending.values()) if (p.state === "sending") p.state = "uncertain";
  }

  /** After a reconnect with no conversation to ask about: nothing can confirm them. */
  failUncertain(note) {
    for (const p of this.pending.values()) if (p.state === "uncertain") this.failPending(p.ref, note);
  }

  reconcilePending(messages, knownIds) {
    const fresh = messages.filter((m) => m.role === "user" && !knownIds.has(m.id));
    for (const p of [...this.pending.values()]) {
      const i = fresh.findIndex((m) => m.content === p.content);
      if (i >= 0) {
        fresh.splice(i, 1);
        this.pending.delete(p.ref);
      } else if (p.state === "uncertain") {
        this.failPending(p.ref, this.strings.notSent);
      }
    }
  }

  // --- DOM -------------------------------------------------------------------

  touch(id) {
    this.dirty.add(id);
    this.schedule(false);
  }

  schedule(layout) {
    if (layout) this.layoutNeeded = true;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Bring the DOM up to date now (also called by the rAF callback). */
  flush() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (this.layoutNeeded) this.layout();
    for (const id of this.dirty) {
      const m = this.messages.get(id);
      const el = this.elements.get(id);
      if (m && el) paintMessage(m, el, this.strings);
    }
    this.dirty.clear();
    const empty = this.messages.size === 0 && this.pending.size === 0;
    this.emptyState.hidden = !empty || this.loading;
    if (this.stick) this.scrollToEnd();
    else this.jump.hidden = this.isNearBottom();
  }

  /** The children of every fork, oldest first, and the newest id under each message. */
  tree() {
    const forks = new Map();
    const newest = new Map();
    const ordered = [...this.messages.values()].sort((a, b) => a.id - b.id);
    for (const m of ordered) {
      const key = forkKey(m, this.messages);
      if (!forks.has(key)) forks.set(key, []);
      forks.get(key).push(m);
      newest.set(m.id, m.id);
    }
    // A parent is always older than its children, so one pass from the newest up suffices.
    for (const m of ordered.reverse()) {
      if (m.parent != null && newest.has(m.parent)) {
        newest.set(m.parent, Math.max(newest.get(m.parent), newest.get(m.id)));
      }
    }
    return { forks, newest };
  }

  layout() {
    this.layoutNeeded = false;
    const { forks, newest } = this.tree();
    const nodes = [];
    const seen = new Set();
    let key = "root";
    while (forks.has(key) && !seen.has(key)) {
      seen.add(key);
      const children = forks.get(key);
      let index = children.findIndex((m) => m.id === this.choice.get(key));
      if (index < 0) {
        index = 0;
        children.forEach((m, i) => {
          if (newest.get(m.id) > newest.get(children[index].id)) index = i;
        });
      }
      const chosen = children[index];
      if (chosen.role !== "system") {
        const el = this.elementFor(chosen);
        this.setPager(el, key, children, index);
        nodes.push(el);
      }
      key = `p${chosen.id}`;
    }
    for (const p of this.pending.values()) nodes.push(p.el);
    syncChildren(this.container, nodes);
  }

  elementFor(m) {
    let el = this.elements.get(m.id);
    if (!el) {
      el = cloneTemplate(m.role === "user" ? "tpl-user" : "tpl-assistant");
      el.dataset.id = m.id;
      this.elements.set(m.id, el);
      this.dirty.add(m.id);
    }
    return el;
  }

  setPager(el, key, variants, index) {
    const pager = el.querySelector(".pager");
    if (!pager) return;
    pager.hidden = variants.length < 2;
    if (pager.hidden) return;
    pager.dataset.key = key;
    const label = pager.querySelector(".pager-label");
    label.textContent = `${index + 1} / ${variants.length}`;
    label.title = format(this.strings.answerOf, { index: index + 1, count: variants.length });
    pager.querySelector('[data-action="prev"]').disabled = index === 0;
    pager.querySelector('[data-action="next"]').disabled = index === variants.length - 1;
  }

  isNearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  onScroll() {
    this.stick = this.isNearBottom();
    this.jump.hidden = this.stick;
  }

  scrollToEnd({ smooth = false } = {}) {
    this.stick = true;
    this.jump.hidden = true;
    this.scroller.scrollTo({ top: this.scroller.scrollHeight, behavior: smooth ? "smooth" : "auto" });
  }

  async onClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || !this.container.contains(button)) return;
    const article = button.closest(".msg");
    const id = Number(article?.dataset.id) || null;
    const action = button.dataset.action;
    if (action === "copy" || action === "copy-code") {
      const text =
        action === "copy" ? this.messages.get(id)?.content ?? "" : button.closest(".codeblock").querySelector("pre").textContent;
      if (await copyText(text)) flashLabel(button, this.strings.copied);
    } else if (action === "edit") {
      this.startEdit(article);
    } else if (action === "edit-cancel") {
      this.endEdit(article);
    } else if (action === "prev" || action === "next") {
      this.step(button.closest(".pager").dataset.key, id, action === "prev" ? -1 : 1);
    } else {
      this.onAction(action, { id, ref: article?.dataset.ref || null });
    }
  }

  // --- editing a message of the person: a new branch from the same point ------

  startEdit(article) {
    const m = this.messages.get(Number(article.dataset.id));
    if (!m) return;
    const form = article.querySelector(".msg-edit");
    const input = form.querySelector("textarea");
    input.value = m.content;
    article.classList.add("is-editing");
    form.hidden = false;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, 320)}px`;
    // preventScroll: the browser would otherwise scroll every ancestor, the
    // app shell included, to bring the caret into view; only the thread moves.
    input.focus({ preventScroll: true });
    input.setSelectionRange(input.value.length, input.value.length);
    this.stick = false;
    this.reveal(form);
  }

  /** Scroll the thread (and nothing else) so that `el` is in view. */
  reveal(el) {
    const box = el.getBoundingClientRect();
    const view = this.scroller.getBoundingClientRect();
    const margin = 12;
    if (box.bottom > view.bottom - margin) this.scroller.scrollTop += box.bottom - view.bottom + margin;
    else if (box.top < view.top + margin) this.scroller.scrollTop -= view.top - box.top + margin;
  }

  endEdit(article) {
    article.classList.remove("is-editing");
    article.querySelector(".msg-edit").hidden = true;
    article.querySelector('[data-action="edit"]')?.focus({ preventScroll: true });
  }

  onEditSubmit(event) {
    const form = event.target.closest(".msg-edit");
    if (!form) return;
    event.preventDefault();
    const article = form.closest(".msg");
    const text = form.querySelector("textarea").value;
    if (!text.trim()) return;
    if (this.onAction("edit-send", { id: Number(article.dataset.id), text }) !== false) this.endEdit(article);
  }

  onEditKey(event) {
    if (!event.target.classList.contains("msg-edit-input")) return;
    if (event.key === "Escape") {
      event.preventDefault(); // cancels the edit; does not stop an answer
      this.endEdit(event.target.closest(".msg"));
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  }

  step(key, currentId, direction) {
    const siblings = this.tree().forks.get(key) || [];
    const index = siblings.findIndex((m) => m.id === currentId) + direction;
    if (index < 0 || index >= siblings.length) return;
    this.choice.set(key, siblings[index].id);
    if (this.conversation !== null) saveChoices(this.conversation, this.choice);
    this.stick = false;
    this.schedule(true);
  }

  /** Remove a message this tab failed to send (the person chose to discard it). */
  dropPending(ref) {
    if (this.pending.delete(ref)) this.schedule(true);
  }
}

/** Make `parent`'s children exactly `nodes`, moving as little as possible. */
function syncChildren(parent, nodes) {
  nodes.forEach((node, i) => {
    if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
  });
  while (parent.children.length > nodes.length) parent.lastElementChild.remove();
}

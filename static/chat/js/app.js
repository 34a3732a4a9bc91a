// The controller: routes protocol frames (docs/websocket-protocol.md) to the
// thread, the sidebar and the composer, and keeps the URL in step.

import { Composer } from "./composer.js";
import { SettingsDialog } from "./dialogs.js";
import { Api } from "./manage.js";
import { byId, newRef } from "./dom.js";
import { Notices } from "./notices.js";
import { Sidebar } from "./sidebar.js";
import { ChatSocket } from "./socket.js";
import { Thread } from "./thread.js";

const SITE_NAME = "GPTalk Chat";
// The close code of a socket whose session ended (docs/websocket-protocol.md).
const SIGNED_OUT_CLOSE = 4401;

export class ChatApp {
  constructor(config, initialMessages) {
    this.config = config;
    this.strings = { ...config.strings, loginUrl: config.loginUrl };
    this.current = config.conversation; // id of the open conversation, or null (new chat)
    this.awaiting = null; // conversation whose `history` we are waiting for
    this.newChatRef = null; // ref of the chat.send that is creating a conversation
    this.checkingSession = false;
    this.title = byId("conv-title");

    const strings = this.strings;
    strings.conversationUrl = config.conversationUrl;
    this.api = new Api({ csrfToken: config.csrfToken, urls: config.urls, strings });
    this.modelPicker = byId("model-picker");
    this.notices = new Notices({ strings });
    this.thread = new Thread({
      container: byId("thread"),
      scroller: byId("scroller"),
      jump: byId("jump"),
      emptyState: byId("empty-state"),
      strings,
      onAction: (action, detail) => this.onAction(action, detail),
    });
    this.sidebar = new Sidebar({
      strings,
      api: this.api,
      onOpen: (id) => this.navigate(id, { push: true }),
      onDeleted: (id) => {
        if (id === this.current) this.navigate(null, { push: true });
      },
      onImported: (conv) => this.navigate(conv.id, { push: true }) || location.assign(conv.url),
      onError: (text) => this.notices.showAlert(text),
    });
    this.settings = new SettingsDialog({
      api: this.api,
      strings,
      defaultPrompt: config.defaultInstructions || "",
      onSave: (values, conv) => this.saveSettings(values, conv),
    });
    byId("conv-settings-btn").addEventListener("click", () => this.settings.open(this.current));
    this.modelPicker.addEventListener("change", () => this.onModelChange());
    this.composer = new Composer({
      strings,
      maxChars: config.maxChars,
      onSend: (text) => this.send(text),
      onStop: () => this.stop(),
      onError: (text) => this.notices.showAlert(text),
      onQueued: () => this.notices.showAlert(this.strings.queued),
    });
    this.socket = new ChatSocket(config.socketPath, {
      onOpen: () => this.onOpen(),
      onClose: (info) => this.onClose(info),
      onFrame: (frame) => this.onFrame(frame),
    });

    if (this.current !== null) this.thread.load(initialMessages);
    window.addEventListener("popstate", () => this.onPopState());
    window.addEventListener("online", () => this.socket.reconnectNow());
    document.addEventListener("keydown", (event) => this.onKey(event));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.socket.reconnectNow();
    });
  }

  start() {
    this.loadModels();
    this.notices.connectingSoon(1500);
    this.socket.connect();
    this.updateMode();
    this.composer.focus();
  }

  /** Esc stops the answer being written (unless it closed a drawer or dialog first); Ctrl/Cmd+K: new chat. */
  onKey(event) {
    if (event.key === "Escape" && !event.defaultPrevented && this.thread.liveAnswer()) {
      event.preventDefault();
      this.stop();
    } else if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "k") {
      event.preventDefault();
      if (!this.navigate(null, { push: true })) location.assign(this.config.indexUrl);
      this.composer.input.focus();
    }
  }

  // --- model and settings --------------------------------------------------

  /** Fill the model picker from GET /api/models/; without it only "Default model" is offered. */
  async loadModels() {
    const models = await this.api.models();
    const options = models.map((m) => {
      const option = document.createElement("option");
      option.value = m.id;
      option.textContent = m.provider && m.name && !m.name.includes(m.provider) ? `${m.name} · ${m.provider}` : m.name || m.id;
      return option;
    });
    this.modelPicker.append(...options);
    // Without a model list (no provider offers one, or no /api/models/) only the default remains.
    this.modelPicker.disabled = options.length === 0;
    if (this.current === null) this.selectModel(this.config.defaultModel || "");
    else this.showModelOf(this.current);
  }

  async showModelOf(id) {
    if (id === null) return;
    const result = await this.api.detail(id);
    if (result.ok && id === this.current) this.selectModel(result.data.model || "");
  }

  selectModel(model) {
    const known = [...this.modelPicker.options].some((o) => o.value === model);
    this.modelPicker.value = known ? model : "";
  }

  async onModelChange() {
    if (this.current === null) return; // sent with the first message
    const result = await this.api.post("settings", this.current, { model: this.modelPicker.value });
    if (!result.ok) this.notices.showAlert(result.error);
  }

  /** Save the system prompt; a new chat is created first so its first answer uses it. */
  async saveSettings(values, conv) {
    if (conv) {
      const result = await this.api.post("settings", conv.id, values);
      return result.ok ? null : result.error;
    }
    const result = await this.api.create({ ...values, model: this.modelPicker.value });
    if (!result.ok) return result.error;
    this.sidebar.upsert(result.data, { url: this.urlFor(result.data.id) });
    this.navigate(result.data.id, { push: true }) || location.assign(this.urlFor(result.data.id));
    return null;
  }

  // --- connection ----------------------------------------------------------

  onOpen() {
    this.notices.setConnection(null);
    this.composer.setOnline(true);
    if (this.current !== null) {
      this.open(this.current); // resumes an answer in progress: history + snapshot
    } else {
      this.newChatRef = null;
      this.thread.failUncertain(this.strings.notSent);
    }
    this.updateMode();
  }

  onClose({ wasOpen, failures, code }) {
    this.composer.setOnline(false);
    this.thread.markUncertain();
    this.notices.setConnection("offline");
    this.awaiting = null;
    // The server ended the socket because its session ended (logged out
    // elsewhere, password changed, account closed): ask the page at once.
    if (code === SIGNED_OUT_CLOSE || (!wasOpen && failures >= 3)) this.checkSession();
    this.updateMode();
  }

  /** A socket refused again and again may mean the session ended: ask the page. */
  async checkSession() {
    if (this.checkingSession) return;
    this.checkingSession = true;
    try {
      const response = await fetch(this.config.indexUrl, { redirect: "manual", cache: "no-store" });
      if (response.type === "opaqueredirect") {
        this.socket.stop();
        this.notices.setConnection("signed-out");
      }
    } catch {
      // The network is down too; keep retrying the socket.
    } finally {
      this.checkingSession = false;
    }
  }

  // --- navigation ----------------------------------------------------------

  urlFor(id) {
    return id === null ? this.config.indexUrl : this.config.conversationUrl.replace("{id}", id);
  }

  /** Show conversation `id` (null: a new chat) without reloading. False: let the browser load it. */
  navigate(id, { push }) {
    if (id !== null && !this.socket.isOpen) return false;
    if (id !== null && id === this.current) return true;
    this.current = id;
    this.newChatRef = null;
    this.awaiting = null;
    this.thread.clear({ loading: id !== null });
    this.sidebar.setActive(id);
    this.setTitle(id === null ? null : this.sidebar.titleOf(id));
    if (id === null) this.selectModel(this.config.defaultModel || "");
    else this.showModelOf(id);
    if (push) history.pushState({ conversation: id }, "", this.urlFor(id));
    if (id !== null) this.open(id);
    this.notices.hideAlert();
    this.updateMode();
    this.composer.focus();
    return true;
  }

  onPopState() {
    const match = location.pathname.match(/\/c\/(\d+)\/$/);
    const id = match ? Number(match[1]) : null;
    if (!this.navigate(id, { push: false })) location.reload();
  }

  /** A conversation this tab just created becomes the open one. */
  adopt(id) {
    this.current = id;
    history.replaceState({ conversation: id }, "", this.urlFor(id));
    this.sidebar.setActive(id);
    this.setTitle(this.sidebar.titleOf(id));
  }

  setTitle(title) {
    const text = this.current === null ? this.strings.newChat : title || this.strings.untitled;
    this.title.textContent = text;
    document.title = this.current === null ? SITE_NAME : `${text} · ${SITE_NAME}`;
  }

  // --- commands ------------------------------------------------------------

  open(id) {
    if (this.socket.send({ type: "conversation.open", conversation: id })) this.awaiting = id;
  }

  send(text, { parent } = {}) {
    const ref = newRef();
    const frame = { type: "chat.send", conversation: this.current, content: text, ref };
    if (parent !== undefined) frame.parent = parent;
    if (this.modelPicker.value) frame.model = this.modelPicker.value;
    if (!this.socket.send(frame)) return false;
    if (this.current === null) this.newChatRef = ref;
    this.notices.hideAlert();
    this.thread.addPending(ref, text);
    this.updateMode();
    return true;
  }

  stop() {
    const live = this.thread.liveAnswer();
    if (live) this.socket.send({ type: "chat.stop", message: live.id });
  }

  onAction(action, detail) {
    const { id, ref } = detail;
    if (action === "retry" || action === "regenerate") {
      const frame = { type: "chat.regenerate", message: id };
      if (this.modelPicker.value) frame.model = this.modelPicker.value;
      if (!this.socket.send(frame)) this.notices.showAlert(this.strings.offline);
    } else if (action === "edit-send") {
      // A new branch from the same point: the earlier message and its answers stay.
      const original = this.thread.messages.get(id);
      if (!original || this.thread.liveAnswer()) {
        this.notices.showAlert(this.strings.busy);
        return false;
      }
      if (!this.send(detail.text, { parent: original.parent ?? null })) {
        this.notices.showAlert(this.strings.offline);
        return false;
      }
    } else if (action === "resend") {
      const pending = this.thread.getPending(ref);
      if (!pending || !this.socket.isOpen) return;
      this.thread.dropPending(ref);
      this.send(pending.content);
    } else if (action === "discard") {
      this.thread.dropPending(ref);
    }
  }

  /** Send becomes Stop while an answer is written; "wait" until the server takes a message. */
  updateMode() {
    const mode = this.thread.liveAnswer() ? "stop" : this.thread.hasSending() ? "wait" : "send";
    this.composer.setMode(mode);
    // A message queued while offline goes out once the open chat is loaded again.
    if (this.awaiting === null) this.composer.flush();
  }

  // --- frames --------------------------------------------------------------

  onFrame(frame) {
    const handler = FRAME_HANDLERS[frame.type];
    if (handler) handler.call(this, frame);
    this.updateMode();
  }
}

const FRAME_HANDLERS = {
  conversation({ conversation: conv }) {
    const isNew = !this.sidebar.has(conv.id);
    this.sidebar.upsert(conv, { url: this.urlFor(conv.id) });
    if (isNew && this.newChatRef !== null && this.current === null) this.adopt(conv.id);
    if (conv.id === this.current) this.setTitle(conv.title);
  },

  history({ conversation: conv, messages }) {
    if (conv.id !== this.current) return; // an answer to an earlier open
    this.awaiting = null;
    this.sidebar.upsert(conv, { url: this.urlFor(conv.id) });
    this.setTitle(conv.title);
    this.thread.load(messages);
  },

  message({ message, ref }) {
    if (ref && this.thread.getPending(ref)) {
      if (ref === this.newChatRef) {
        this.newChatRef = null;
        if (this.current !== message.conversation) this.adopt(message.conversation);
      }
      this.thread.confirmPending(ref);
    }
    if (message.role === "user") this.sidebar.touch(message.conversation, message.created_at);
    if (message.conversation !== this.current || this.awaiting !== null) return;
    this.thread.upsert(message);
  },

  delta(frame) {
    if (this.awaiting !== null) return; // the coming history + snapshot cover it
    if (frame.compact) {
      // Protocol v2: a bare string is the next piece of the answer being written.
      const live = this.thread.liveAnswer();
      if (!live) return;
      frame = { ...frame, message: live.id, seq: (live.seq ?? 0) + 1 };
    }
    if (this.thread.delta(frame) === "gap") this.open(this.current);
  },

  snapshot(frame) {
    if (this.awaiting === null) this.thread.snapshot(frame);
  },

  done(frame) {
    // v2 leaves the text out when this tab should have all of it; if a piece
    // is missing after all, fetch the saved answer instead of showing a gap.
    const answer = this.thread.messages.get(frame.message);
    const incomplete = frame.content === undefined && frame.seq !== undefined && answer && answer.seq !== frame.seq;
    this.thread.done(frame);
    if (incomplete && this.current !== null) this.open(this.current);
  },

  error({ code, detail, ref }) {
    const pending = ref ? this.thread.getPending(ref) : null;
    if (pending) {
      if (ref === this.newChatRef) this.newChatRef = null;
      if (this.composer.input.value.trim()) {
        this.thread.failPending(ref, detail);
      } else {
        this.thread.dropPending(ref);
        this.composer.restore(pending.content);
      }
      this.notices.showAlert(detail || this.strings.errorGeneric);
    } else if (code === "not_streaming") {
      // The answer ended by itself just before the stop arrived; `done` says how.
    } else if (code === "not_found" && this.awaiting !== null) {
      this.navigate(null, { push: false });
      history.replaceState({ conversation: null }, "", this.urlFor(null));
      this.notices.showAlert(this.strings.notFound);
    } else {
      this.notices.showAlert(detail || this.strings.errorGeneric);
    }
  },
};

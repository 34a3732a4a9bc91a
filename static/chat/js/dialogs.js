// Modal dialogs built on <dialog> (focus is trapped and restored by the browser):
// a confirmation, and the settings of one conversation.

import { byId, copyText } from "./dom.js";

/** Ask a yes/no question; resolves true when the person confirms. */
export function confirmDialog({ title, text, confirmLabel }) {
  const dialog = byId("confirm-dialog");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-ok").textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

/**
 * The chat settings dialog: system prompt, share link, export links.
 * open(conversation|null) shows the saved values; onSave({system_prompt}) saves them.
 */
export class SettingsDialog {
  constructor({ api, strings, onSave, defaultPrompt = "" }) {
    Object.assign(this, { api, strings, onSave, defaultPrompt });
    this.dialog = byId("settings-dialog");
    this.prompt = byId("system-prompt");
    this.error = byId("settings-error");
    this.shareUrl = byId("share-url");
    this.conversation = null;
    this.dialog.addEventListener("close", () => this.onClose());
    byId("share-create").addEventListener("click", () => this.share("share-create"));
    byId("share-revoke").addEventListener("click", () => this.share("share-revoke"));
    byId("share-copy").addEventListener("click", async (event) => {
      if (await copyText(this.shareUrl.value)) event.target.textContent = this.strings.copied;
    });
    // Esc inside the dialog closes it, and must not also stop an answer.
    this.dialog.addEventListener("keydown", (event) => {
      if (event.key === "Escape") event.preventDefault(), this.dialog.close("cancel");
    });
    this.dialog.addEventListener("cancel", (event) => event.preventDefault());
  }

  async open(id) {
    this.error.hidden = true;
    this.conversation = null;
    // A new chat starts with the custom instructions of the account page.
    this.prompt.value = id === null ? this.defaultPrompt : "";
    byId("share-section").hidden = id === null;
    byId("export-section").hidden = id === null;
    if (id !== null) {
      const result = await this.api.detail(id);
      if (!result.ok) return this.fail(result.error);
      this.conversation = result.data;
      this.prompt.value = result.data.system_prompt || "";
      byId("export-md").href = this.api.url("exportMd", id);
      byId("export-json").href = this.api.url("exportJson", id);
      this.showShare(result.data.share_url);
    }
    this.dialog.returnValue = "";
    this.dialog.showModal();
    this.prompt.focus();
  }

  showShare(url) {
    this.shareUrl.value = url || "";
    this.shareUrl.hidden = !url;
    byId("share-create").hidden = Boolean(url);
    byId("share-copy").hidden = !url;
    byId("share-copy").textContent = this.strings.copyLink;
    byId("share-revoke").hidden = !url;
  }

  async share(action) {
    const result = await this.api.post(action, this.conversation.id);
    if (!result.ok) return this.fail(result.error);
    this.showShare(result.data.share_url);
    if (result.data.share_url) this.shareUrl.select();
  }

  fail(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }

  async onClose() {
    if (this.dialog.returnValue !== "save") return;
    const value = this.prompt.value;
    if (this.conversation && value === (this.conversation.system_prompt || "")) return;
    const problem = await this.onSave({ system_prompt: value }, this.conversation);
    if (problem) {
      this.dialog.showModal();
      this.fail(problem);
    }
  }
}

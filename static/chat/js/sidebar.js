// The sidebar: the drawer on narrow screens, the menu of each chat (rename,
// pin, delete), search and import. The list itself is conv-list.js.

import { ConversationList } from "./conv-list.js";
import { confirmDialog } from "./dialogs.js";
import { byId, cloneTemplate, format } from "./dom.js";

const NARROW = window.matchMedia("(max-width: 768px)");

export class Sidebar {
  /**
   * onOpen(id|null) is called when a chat is picked; it returns true if it handled it.
   * onDeleted(id) after a chat was deleted here; onImported(conv) after an import.
   */
  constructor({ strings, api, onOpen, onDeleted, onImported, onError }) {
    Object.assign(this, { strings, api, onOpen, onDeleted, onImported, onError });
    this.app = byId("app");
    this.nav = byId("sidebar");
    this.empty = byId("conv-empty");
    this.list = new ConversationList({
      root: byId("conv-list"),
      more: byId("conv-more"),
      scroller: byId("conv-scroll"),
      api,
      makeItem: (conv) => this.makeItem(conv),
      onError,
    });
    this.menuButton = byId("menu-btn");
    this.backdrop = byId("backdrop");

    this.menuButton.addEventListener("click", () => this.setOpen(true));
    byId("sidebar-close").addEventListener("click", () => this.setOpen(false));
    this.backdrop.addEventListener("click", () => this.setOpen(false));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) {
        event.preventDefault(); // closing the drawer is all Esc does this time
        this.setOpen(false);
      }
    });
    NARROW.addEventListener("change", () => this.setOpen(false));
    this.nav.addEventListener("click", (event) => this.onClick(event));
    byId("topbar-new").addEventListener("click", (event) => this.onClick(event));
    this.menu = byId("conv-menu");
    this.menuFor = null; // the <a.conv> whose menu is open
    this.menu.addEventListener("click", (event) => this.onMenu(event));
    this.menu.addEventListener("keydown", (event) => this.onMenuKey(event));
    document.addEventListener("click", (event) => {
      if (!this.menu.hidden && !this.menu.contains(event.target) && !event.target.closest("[data-action='conv-menu']")) this.closeMenu();
    });
    this.setUpSearch();
    byId("import-file").addEventListener("change", (event) => this.importFile(event.target));
  }

  // --- the menu of one chat: rename, pin, delete --------------------------------

  openMenu(button) {
    const link = button.parentElement.querySelector("a.conv");
    if (this.menuFor === link) return this.closeMenu();
    this.closeMenu();
    this.menuFor = link;
    this.menuButton = button;
    button.setAttribute("aria-expanded", "true");
    const pinned = link.dataset.pinned === "1";
    this.menu.querySelector('[data-menu="pin"]').hidden = pinned;
    this.menu.querySelector('[data-menu="unpin"]').hidden = !pinned;
    const box = button.getBoundingClientRect();
    const navBox = this.nav.getBoundingClientRect();
    this.menu.hidden = false;
    const top = Math.min(box.bottom + 4, window.innerHeight - this.menu.offsetHeight - 8);
    this.menu.style.top = `${top}px`;
    this.menu.style.left = `${Math.max(8, Math.min(box.right - this.menu.offsetWidth, navBox.right - this.menu.offsetWidth - 8))}px`;
    this.menu.querySelector("[role=menuitem]:not([hidden])").focus();
  }

  closeMenu({ focus = false } = {}) {
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    this.menuButton?.setAttribute("aria-expanded", "false");
    if (focus) this.menuButton?.focus();
    this.menuFor = null;
  }

  onMenuKey(event) {
    const items = [...this.menu.querySelectorAll("[role=menuitem]:not([hidden])")];
    const at = items.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      items[(at + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length].focus();
    } else if (event.key === "Escape" || event.key === "Tab") {
      if (event.key === "Escape") event.preventDefault();
      this.closeMenu({ focus: event.key === "Escape" });
    }
  }

  async onMenu(event) {
    const item = event.target.closest("[data-menu]");
    if (!item || !this.menuFor) return;
    const link = this.menuFor;
    const id = Number(link.dataset.id);
    this.closeMenu();
    const action = item.dataset.menu;
    if (action === "rename") this.startRename(link);
    else if (action === "pin" || action === "unpin") {
      const result = await this.api.post("pin", id, { pinned: action === "pin" });
      if (result.ok) this.upsert(result.data, { url: link.href });
      else this.onError(result.error);
    } else if (action === "delete") {
      const title = link.textContent;
      const confirmed = await confirmDialog({
        title: this.strings.deleteTitle,
        text: format(this.strings.deleteText, { title }),
        confirmLabel: this.strings.delete,
      });
      if (!confirmed) return link.parentElement.querySelector("[data-action='conv-menu']").focus();
      const result = await this.api.post("delete", id);
      if (!result.ok && result.status !== 404) return this.onError(result.error);
      this.remove(id);
      this.onDeleted(id);
    }
  }

  startRename(link) {
    const item = link.parentElement;
    const input = document.createElement("input");
    input.type = "text";
    input.className = "conv-rename";
    input.value = link.textContent;
    input.maxLength = 200;
    input.setAttribute("aria-label", this.strings.renameLabel);
    link.hidden = true;
    item.insertBefore(input, link);
    input.focus();
    input.select();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      input.remove();
      link.hidden = false;
      if (save && title && title !== link.textContent) {
        const before = link.textContent;
        link.textContent = title;
        const result = await this.api.post("rename", link.dataset.id, { title });
        if (result.ok) this.upsert(result.data, { url: link.href });
        else {
          link.textContent = before;
          this.onError(result.error);
        }
      }
      link.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") event.preventDefault(), finish(true);
      else if (event.key === "Escape") event.preventDefault(), finish(false);
    });
    input.addEventListener("blur", () => finish(true));
  }

  remove(id) {
    const link = this.linkFor(id);
    if (link) this.list.remove(link.parentElement);
    for (const hit of this.searchList.querySelectorAll(`a.conv[data-id="${Number(id)}"]`)) hit.parentElement.remove();
    this.empty.hidden = !this.list.isEmpty;
  }

  // --- search over titles and message text ------------------------------------------

  setUpSearch() {
    this.searchInput = byId("conv-search");
    this.searchBox = byId("search-results");
    this.searchList = byId("search-list");
    this.section = byId("conv-section");
    this.searchTimer = 0;
    this.searchSeq = 0;
    byId("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.runSearch();
    });
    this.searchInput.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.runSearch(), 200);
    });
    this.searchInput.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.searchInput.value) {
        event.preventDefault();
        this.searchInput.value = "";
        this.runSearch();
      }
    });
  }

  async runSearch() {
    const query = this.searchInput.value.trim();
    const seq = ++this.searchSeq;
    if (!query) {
      this.searchBox.hidden = true;
      this.section.hidden = false;
      return;
    }
    const result = await this.api.search(query);
    if (seq !== this.searchSeq) return; // a newer search is on its way
    if (!result.ok) return this.onError(result.error);
    const words = searchWords(query);
    const items = result.data.results.map((hit) => {
      const item = cloneTemplate("tpl-hit");
      const link = item.querySelector("a");
      link.dataset.id = hit.id;
      link.href = this.urlFor(hit.id);
      markMatches(link.querySelector(".conv-hit-title"), hit.title || this.strings.untitled, words);
      markMatches(link.querySelector(".conv-hit-snippet"), hit.snippet, words);
      return item;
    });
    this.searchList.replaceChildren(...items);
    byId("search-empty").hidden = items.length > 0;
    this.searchBox.hidden = false;
    this.section.hidden = true;
  }

  // --- import --------------------------------------------------------------------------

  async importFile(input) {
    const file = input.files[0];
    input.value = "";
    if (!file) return;
    const result = await this.api.importFile(file);
    if (!result.ok) return this.onError(format(this.strings.importFailed, { error: result.error }));
    this.upsert(result.data, { url: result.data.url });
    this.onImported(result.data);
  }

  get isOpen() {
    return this.app.classList.contains("sidebar-open");
  }

  setOpen(open) {
    if (open === this.isOpen) return;
    this.app.classList.toggle("sidebar-open", open);
    this.backdrop.hidden = !open;
    this.menuButton.setAttribute("aria-expanded", String(open));
    if (open) this.nav.querySelector("#new-chat").focus();
    else if (NARROW.matches) this.menuButton.focus();
  }

  onClick(event) {
    if (event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return; // new tab
    const menuButton = event.target.closest("[data-action='conv-menu']");
    if (menuButton) {
      event.preventDefault();
      this.openMenu(menuButton);
      return;
    }
    const link = event.target.closest("a.conv, #new-chat, #topbar-new");
    if (!link) return;
    const id = link.classList.contains("conv") ? Number(link.dataset.id) : null;
    if (this.onOpen(id)) {
      event.preventDefault();
      this.setOpen(false);
    }
  }

  has(id) {
    return this.linkFor(id) !== null;
  }

  linkFor(id) {
    return this.list.linkFor(id);
  }

  titleOf(id) {
    return this.linkFor(id)?.textContent ?? "";
  }

  /** Add or update a conversation from a `conversation`/`history` frame, keeping the order. */
  upsert(conv, { url }) {
    const link = this.linkFor(conv.id) ?? this.makeItem(conv, { url }).querySelector("a");
    this.fill(link, conv);
    this.list.place(link.parentElement);
    this.empty.hidden = true;
  }

  /** A new <li> of the list for a conversation (a `conversation` frame, a page of the API). */
  makeItem(conv, { url } = {}) {
    const item = cloneTemplate("tpl-conv");
    const link = item.querySelector("a");
    link.dataset.id = conv.id;
    link.href = url || this.urlFor(conv.id);
    this.fill(link, conv);
    return item;
  }

  fill(link, conv) {
    link.textContent = conv.title || this.strings.untitled;
    link.dataset.updated = conv.updated_at || "";
    link.dataset.pinned = conv.pinned ? "1" : "0";
    link.classList.toggle("conv-pinned", Boolean(conv.pinned));
  }

  urlFor(id) {
    return this.strings.conversationUrl.replace("{id}", id);
  }

  /** Something new happened in a conversation: it moves up the list. */
  touch(id, when) {
    const link = this.linkFor(id);
    if (!link || !when) return;
    link.dataset.updated = when;
    this.list.place(link.parentElement);
  }

  setActive(id) {
    for (const link of this.list.root.querySelectorAll('a.conv[aria-current="page"]')) link.removeAttribute("aria-current");
    const link = id == null ? null : this.linkFor(id);
    if (link) {
      link.setAttribute("aria-current", "page");
      link.scrollIntoView({ block: "nearest" });
    }
  }
}

// --- search highlighting: text nodes and <mark>, never markup from the server ------------

/** The words of a search to highlight: websearch syntax aside (quotes, -excluded, or). */
export function searchWords(query) {
  const words = query
    .split(/\s+/)
    .filter((word) => word && !word.startsWith("-") && word.toLowerCase() !== "or")
    .map((word) => word.replace(/^"+|"+$/g, ""))
    .filter(Boolean);
  return [...new Set(words)].sort((a, b) => b.length - a.length);
}

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Fill `el` with `text`, every case-insensitive occurrence of a word in a <mark>. */
export function markMatches(el, text, words) {
  el.replaceChildren();
  if (!words.length) return el.append(text);
  const pattern = new RegExp(words.map(escapeRegExp).join("|"), "giu");
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > at) el.append(text.slice(at, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    el.append(mark);
    at = match.index + match[0].length;
  }
  el.append(text.slice(at));
}

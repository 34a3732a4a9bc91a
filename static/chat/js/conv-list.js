// The sidebar's list of chats: grouped by date (Pinned, Today, Yesterday,
// Previous 7 days, Previous 30 days, then one group per month), in pages.
// The page renders the first page; the next ones come from
// GET /api/conversations/?before=<cursor> when the end of the list scrolls
// into view (or its "Show more chats" button is pressed).

import { cloneTemplate } from "./dom.js";

const DAY = 24 * 60 * 60 * 1000;
const RECENT = ["pinned", "today", "yesterday", "week", "month"];

/** The group of a chat, by its pin and its last activity in the viewer's own time zone. */
export function groupOf({ pinned, updated }, now = new Date()) {
  if (pinned) return "pinned";
  const when = new Date(updated);
  if (Number.isNaN(when.getTime())) return "today";
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  if (when >= today) return "today";
  if (when >= today - DAY) return "yesterday";
  if (when >= today - 7 * DAY) return "week";
  if (when >= today - 30 * DAY) return "month";
  return `${when.getFullYear()}-${String(when.getMonth() + 1).padStart(2, "0")}`;
}

/** Order of groups: the recent ones as listed, then months, newest first. */
function groupRank(key) {
  const recent = RECENT.indexOf(key);
  if (recent >= 0) return [recent, 0];
  const [year, month] = key.split("-").map(Number);
  return [RECENT.length, -(year * 12 + month)];
}

function before(a, b) {
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

export class ConversationList {
  /** `root` is #conv-list; `more` the button at its end; `makeItem(conv)` builds an <li>. */
  constructor({ root, more, scroller, api, makeItem, onError }) {
    Object.assign(this, { root, more, api, makeItem, onError });
    this.next = root.dataset.next || null;
    this.loading = false;
    const lang = document.documentElement.lang || undefined;
    this.monthFormat = new Intl.DateTimeFormat(lang, { month: "long", year: "numeric" });
    // The page's own items arrive in one flat list, newest first: sort them into groups.
    const flat = root.querySelector(":scope > ul.conv-list");
    for (const item of [...(flat?.children ?? [])]) this.place(item);
    flat?.remove();
    this.more.addEventListener("click", () => this.loadMore());
    this.observer = new IntersectionObserver(
      (entries) => entries.some((e) => e.isIntersecting) && this.loadMore(),
      { root: scroller, rootMargin: "200px" },
    );
    this.watchEnd();
    // A tab left open overnight: yesterday's "Today" becomes "Yesterday".
    document.addEventListener("visibilitychange", () => document.hidden || this.regroup());
  }

  // --- pages -------------------------------------------------------------------------

  watchEnd() {
    this.more.hidden = !this.next;
    this.observer.disconnect();
    // Observing anew reports at once whether the end is in view: a short page pulls the next.
    if (this.next) this.observer.observe(this.more);
  }

  async loadMore() {
    if (this.loading || !this.next) return;
    this.loading = true;
    this.more.setAttribute("aria-busy", "true");
    const result = await this.api.request(`${this.root.dataset.pageUrl}?before=${encodeURIComponent(this.next)}`);
    this.loading = false;
    this.more.removeAttribute("aria-busy");
    if (!result.ok) return this.onError(result.error);
    for (const conv of result.data.results) {
      if (!this.linkFor(conv.id)) this.place(this.makeItem(conv)); // one already moved up by activity stays
    }
    this.next = result.data.next;
    this.watchEnd();
  }

  // --- the items -----------------------------------------------------------------------

  linkFor(id) {
    return this.root.querySelector(`a.conv[data-id="${Number(id)}"]`);
  }

  links() {
    return this.root.querySelectorAll("a.conv");
  }

  get isEmpty() {
    return this.root.querySelector("a.conv") === null;
  }

  /** Put an <li> in its group, pinned first then most recent first (as conversation_page orders). */
  place(item) {
    const link = item.querySelector("a.conv");
    const key = groupOf({ pinned: link.dataset.pinned === "1", updated: link.dataset.updated });
    const list = this.groupList(key);
    const rank = (a) => [a.dataset.pinned === "1" ? 0 : 1, -(Date.parse(a.dataset.updated) || 0), -Number(a.dataset.id)];
    const mine = rank(link);
    const next = [...list.children].find((li) => li !== item && before(mine, rank(li.querySelector("a.conv"))));
    const oldGroup = item.closest(".conv-group");
    if (next) {
      if (item.nextElementSibling !== next) list.insertBefore(item, next);
    } else if (list.lastElementChild !== item) {
      list.append(item);
    }
    if (oldGroup && oldGroup !== list.closest(".conv-group")) this.dropIfEmpty(oldGroup);
  }

  remove(item) {
    const group = item.closest(".conv-group");
    item.remove();
    if (group) this.dropIfEmpty(group);
  }

  dropIfEmpty(group) {
    if (!group.querySelector("li")) group.remove();
  }

  /** The <ul> of a group, made (with its heading, in its place) when it is missing. */
  groupList(key) {
    const found = this.root.querySelector(`:scope > .conv-group[data-group="${key}"] > ul`);
    if (found) return found;
    const group = cloneTemplate("tpl-conv-group");
    group.dataset.group = key;
    group.querySelector("h3").textContent = this.label(key);
    const mine = groupRank(key);
    const next = [...this.root.querySelectorAll(":scope > .conv-group")].find((g) =>
      before(mine, groupRank(g.dataset.group)),
    );
    this.root.insertBefore(group, next ?? null);
    return group.querySelector("ul");
  }

  label(key) {
    if (RECENT.includes(key)) return this.root.dataset[`label${key[0].toUpperCase()}${key.slice(1)}`];
    const [year, month] = key.split("-").map(Number);
    const text = this.monthFormat.format(new Date(year, month - 1, 1));
    return text[0].toLocaleUpperCase() + text.slice(1); // "ноябрь 2026 г." → "Ноябрь 2026 г."
  }

  /** Move every chat to the group it belongs to now (after midnight, say). */
  regroup() {
    for (const link of [...this.links()]) this.place(link.parentElement);
  }
}

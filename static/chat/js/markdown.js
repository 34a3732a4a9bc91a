// Model output → sanitized DOM. Never a string of live HTML.
//
// Three locks: marked's renderer escapes every raw-HTML token (so a model's
// <script> or <img onerror> arrives as visible text); DOMPurify keeps only the
// tags Markdown produces, only http(s)/mailto links and no images (a remote
// image is a way to leak the conversation through its URL); math and code are
// carried through DOMPurify as plain text and only then typeset by KaTeX
// (trust: false) and highlight.js, which build their own escaped DOM.
// KaTeX and each highlight.js grammar are fetched the first time an answer
// needs them: a page with no math and no code loads neither.
//
// A streaming answer is rendered incrementally (StreamRenderer): top-level
// blocks that can no longer change are frozen, and only the tail is parsed and
// sanitized again, so the cost per update does not grow with the answer.

import { Marked } from "../../vendor/marked/marked.esm.js";
import DOMPurify from "../../vendor/dompurify/purify.es.mjs";
import { highlightCode } from "./highlight.js";

const SAFE_URL = /^(?:https?:|mailto:)/i;
const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

// $$…$$ / \[…\] blocks and $…$ / \(…\) inline math, as placeholders holding the TeX as text.
const mathExtensions = [
  {
    name: "mathBlock",
    level: "block",
    start: (src) => src.match(/\$\$|\\\[/)?.index,
    tokenizer(src) {
      const match = /^(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[ \t]*(?:\n|$)/.exec(src);
      if (match) return { type: "mathBlock", raw: match[0], text: (match[1] ?? match[2]).trim() };
      return undefined;
    },
    renderer: ({ text }) => `<div class="math-display">${escapeHtml(text)}</div>\n`,
  },
  {
    name: "mathInline",
    level: "inline",
    start: (src) => src.match(/\$|\\\(/)?.index,
    tokenizer(src) {
      // $x$ needs no space inside its edges and no digit after it (so "$5 and $10" stays text).
      const match =
        /^\$\$([^$]+?)\$\$/.exec(src) ||
        /^\$(?![\s$])((?:\\.|[^\\$\n])+?)(?<!\s)\$(?!\d)/.exec(src) ||
        /^\\\(([\s\S]+?)\\\)/.exec(src);
      if (match) return { type: "mathInline", raw: match[0], text: match[1].trim() };
      return undefined;
    },
    renderer: ({ text }) => `<span class="math-inline">${escapeHtml(text)}</span>`,
  },
];

const marked = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  extensions: mathExtensions,
  renderer: {
    html({ text, block }) {
      const escaped = escapeHtml(text);
      return block ? `<p>${escaped}</p>` : escaped;
    },
    link(token) {
      if (!SAFE_URL.test(token.href.trim())) return this.parser.parseInline(token.tokens);
      return false; // marked's own renderer
    },
    image({ href, text }) {
      // Shown as a link the person may choose to follow, never fetched.
      if (!SAFE_URL.test(href.trim())) return escapeHtml(text);
      return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
    },
    checkbox({ checked }) {
      return checked ? "☑ " : "☐ ";
    },
  },
});

const PURIFY_CONFIG = {
  ALLOWED_TAGS: [
    "a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "ul",
  ],
  ALLOWED_ATTR: ["href", "title", "align", "start", "class"],
  ALLOWED_URI_REGEXP: SAFE_URL,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

const LANGUAGE_CLASS = /^language-[\w+#.-]{1,40}$/;
const KEPT_CLASSES = { DIV: "math-display", SPAN: "math-inline" };

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.hasAttribute("class")) {
    const value = node.getAttribute("class");
    const keep =
      (node.tagName === "CODE" && LANGUAGE_CLASS.test(value)) || KEPT_CLASSES[node.tagName] === value;
    if (!keep) node.removeAttribute("class");
  }
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const KATEX_OPTIONS = {
  throwOnError: false,
  trust: false,
  strict: "ignore",
  maxSize: 20,
  maxExpand: 200,
  output: "htmlAndMathml",
};

// KaTeX's minified build is a UMD script: imported as a module it defines
// window.katex. Its stylesheet is a disabled <link id="katex-css"> in the page
// (the hashed URL comes from the template); enabling it fetches it.
let katex = null;
let katexLoading = null;

function loadKatex() {
  if (!katexLoading) {
    const style = document.getElementById("katex-css");
    if (style) style.disabled = false;
    katexLoading = import("../../vendor/katex/katex.min.js").then(() => {
      katex = window.katex;
      return katex;
    });
    // Offline: the math stays as its TeX source; a later answer tries again.
    katexLoading.catch(() => (katexLoading = null));
  }
  return katexLoading;
}

function typeset(el, tex) {
  katex.render(tex, el, { ...KATEX_OPTIONS, displayMode: el.classList.contains("math-display") });
}

/** Sanitized fragment of Markdown tokens (or of a source string). */
function toFragment(html, { copyLabel, highlight }) {
  const fragment = DOMPurify.sanitize(html, PURIFY_CONFIG);
  decorate(fragment, { copyLabel, highlight });
  return fragment;
}

/**
 * Render Markdown source into a fragment ready for `el.replaceChildren()`.
 * Code blocks get a header with their language and a copy button (and syntax
 * colours), tables a wrapper that scrolls sideways, math is typeset.
 */
export function renderMarkdown(source, { copyLabel, highlight = true } = {}) {
  return toFragment(marked.parse(source), { copyLabel, highlight });
}

function decorate(fragment, { copyLabel, highlight }) {
  const pending = [];
  for (const el of fragment.querySelectorAll(".math-inline, .math-display")) {
    const tex = el.textContent;
    el.title = tex;
    if (katex) typeset(el, tex);
    else pending.push([el, tex]); // shown as TeX source until KaTeX arrives
  }
  if (pending.length) {
    loadKatex().then(
      () => pending.forEach(([el, tex]) => typeset(el, tex)),
      (error) => console.warn("KaTeX could not be loaded", error),
    );
  }
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const language = (code?.className || "").replace(/^language-/, "");
    if (code && highlight) highlightCode(code, language);
    const box = document.createElement("div");
    box.className = "codeblock";
    const head = document.createElement("div");
    head.className = "codeblock-head";
    const lang = document.createElement("span");
    lang.textContent = language;
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "codeblock-copy";
    copy.dataset.action = "copy-code";
    copy.textContent = copyLabel || "Copy";
    head.append(lang, copy);
    pre.replaceWith(box);
    box.append(head, pre);
  }
  for (const table of fragment.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    table.replaceWith(wrap);
    wrap.append(table);
  }
}

/**
 * Incremental rendering of one growing Markdown text into `container`.
 *
 * The text is split into top-level blocks (marked's lexer); every block but the
 * last two is final (nothing appended later can change how it parses, except
 * for rare reference-style link definitions, which the final full render
 * fixes). Final blocks are rendered once and kept; only the tail is lexed,
 * parsed and sanitized again on each update. `update()` is called at most once
 * per animation frame by the thread.
 */
export class StreamRenderer {
  constructor(container, options) {
    this.container = container;
    this.options = options;
    this.reset();
  }

  reset() {
    this.source = "";
    this.frozenChars = 0; // characters of `source` rendered into frozen nodes
    this.frozenNodes = 0; // leading child nodes of the container that are final
    this.final = false;
    this.container.replaceChildren();
  }

  /** Show `source`; `final` renders it whole once (the authoritative `done` text). */
  update(source, { final = false } = {}) {
    source = source.replace(/\r\n?/g, "\n"); // as marked's lexer does, so lengths agree
    if (source === this.source && final === this.final) return;
    if (final) {
      // The authoritative text: one full render (reference links, a reset, the last block).
      this.container.replaceChildren(renderMarkdown(source, this.options));
      Object.assign(this, { source, final, frozenChars: source.length });
      this.frozenNodes = this.container.childNodes.length;
      return;
    }
    if (this.final || !source.startsWith(this.source)) {
      // Not a continuation (a `reset` delta or a snapshot that replaced the text): start over.
      this.container.replaceChildren();
      Object.assign(this, { frozenChars: 0, frozenNodes: 0 });
    }
    this.source = source;
    this.final = false;
    this.renderTail();
  }

  renderTail() {
    const rest = this.source.slice(this.frozenChars);
    const tokens = marked.lexer(rest);
    if (tokens.reduce((n, t) => n + t.raw.length, 0) !== rest.length) {
      // The blocks do not add up to the text (should not happen): render it whole.
      Object.assign(this, { frozenChars: 0, frozenNodes: 0 });
      this.container.replaceChildren(renderMarkdown(this.source, { ...this.options, highlight: false }));
      return;
    }
    // Index of the first block still open: keep the last two non-space blocks live.
    let live = tokens.length;
    for (let seen = 0; live > 0 && seen < 2; ) {
      live -= 1;
      if (tokens[live].type !== "space") seen += 1;
    }
    const frozen = tokens.slice(0, live);
    const tail = tokens.slice(live);
    // Drop the previous tail (everything after the frozen nodes).
    while (this.container.childNodes.length > this.frozenNodes) this.container.lastChild.remove();
    if (frozen.length) {
      frozen.links = tokens.links;
      const fragment = toFragment(marked.parser(frozen), this.options);
      this.frozenNodes += fragment.childNodes.length;
      this.frozenChars += frozen.reduce((n, t) => n + t.raw.length, 0);
      this.container.append(fragment);
    }
    if (tail.length) {
      tail.links = tokens.links;
      // The tail's code is left uncoloured until it is final: cheap while it grows.
      this.container.append(toFragment(marked.parser(tail), { ...this.options, highlight: false }));
    }
  }
}

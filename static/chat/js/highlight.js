// Syntax colours for fenced code: highlight.js core and one grammar per
// language, each fetched the first time a code block of that language appears
// (vendored ES modules). Only a block that names a known language is coloured;
// there is no guessing, which would cost time on every block.
//
// Every import() below names its file literally: collectstatic rewrites those
// paths to the content-hashed names (gptalk_site/staticfiles.py).

import DOMPurify from "../../vendor/dompurify/purify.es.mjs";

const GRAMMARS = {
  bash: () => import("../../vendor/highlight/languages/bash.min.js"),
  c: () => import("../../vendor/highlight/languages/c.min.js"),
  cpp: () => import("../../vendor/highlight/languages/cpp.min.js"),
  css: () => import("../../vendor/highlight/languages/css.min.js"),
  diff: () => import("../../vendor/highlight/languages/diff.min.js"),
  go: () => import("../../vendor/highlight/languages/go.min.js"),
  java: () => import("../../vendor/highlight/languages/java.min.js"),
  javascript: () => import("../../vendor/highlight/languages/javascript.min.js"),
  json: () => import("../../vendor/highlight/languages/json.min.js"),
  markdown: () => import("../../vendor/highlight/languages/markdown.min.js"),
  plaintext: () => import("../../vendor/highlight/languages/plaintext.min.js"),
  python: () => import("../../vendor/highlight/languages/python.min.js"),
  rust: () => import("../../vendor/highlight/languages/rust.min.js"),
  shell: () => import("../../vendor/highlight/languages/shell.min.js"),
  sql: () => import("../../vendor/highlight/languages/sql.min.js"),
  typescript: () => import("../../vendor/highlight/languages/typescript.min.js"),
  xml: () => import("../../vendor/highlight/languages/xml.min.js"),
  yaml: () => import("../../vendor/highlight/languages/yaml.min.js"),
};

// The grammars' own aliases (their `aliases:` lists), known before a grammar is loaded.
const ALIASES = {
  sh: "bash", zsh: "bash", h: "c", cc: "cpp", "c++": "cpp", "h++": "cpp", hpp: "cpp", hh: "cpp",
  hxx: "cpp", cxx: "cpp", patch: "diff", golang: "go", jsp: "java", js: "javascript",
  jsx: "javascript", mjs: "javascript", cjs: "javascript", jsonc: "json", json5: "json",
  md: "markdown", mkdown: "markdown", mkd: "markdown", text: "plaintext", txt: "plaintext",
  py: "python", gyp: "python", ipython: "python", rs: "rust", console: "shell",
  shellsession: "shell", ts: "typescript", tsx: "typescript", mts: "typescript",
  cts: "typescript", html: "xml", xhtml: "xml", rss: "xml", atom: "xml", xjb: "xml", xsd: "xml",
  xsl: "xml", plist: "xml", wsf: "xml", svg: "xml", yml: "yaml",
};

let hljs = null; // the core, once loaded
let coreLoading = null;
const grammarsLoading = new Map(); // name → Promise of its registration

function grammarName(language) {
  const name = language.toLowerCase();
  if (Object.hasOwn(GRAMMARS, name)) return name;
  return Object.hasOwn(ALIASES, name) ? ALIASES[name] : null;
}

function loadCore() {
  coreLoading ??= import("../../vendor/highlight/core.min.js").then(({ default: core }) => {
    core.configure({ ignoreUnescapedHTML: true, throwUnescapedHTML: false });
    hljs = core;
    return core;
  });
  return coreLoading;
}

function loadGrammar(name) {
  if (!grammarsLoading.has(name)) {
    const loading = Promise.all([loadCore(), GRAMMARS[name]()]).then(([core, grammar]) => {
      core.registerLanguage(name, grammar.default);
    });
    // A failed fetch (offline) leaves the code uncoloured and may be tried again later.
    loading.catch(() => grammarsLoading.delete(name));
    grammarsLoading.set(name, loading);
  }
  return grammarsLoading.get(name);
}

// A DOMPurify instance of its own: the Markdown one strips every class but
// language-*; this one keeps only highlight.js's (hljs-keyword, title function_ …).
const purifier = DOMPurify(window);
const HLJS_CLASS = /^hljs-[\w-]+$|^[a-z]+_+$/;
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (!node.hasAttribute("class")) return;
  const kept = node.getAttribute("class").split(/\s+/).filter((name) => HLJS_CLASS.test(name));
  if (kept.length) node.setAttribute("class", kept.join(" "));
  else node.removeAttribute("class");
});

/**
 * highlight.js turns the element's text into escaped text inside
 * <span class="hljs-…">; that markup still goes through DOMPurify (spans and
 * classes only) and replaceChildren, like every other piece of model output,
 * never through innerHTML.
 */
function colour(code, name) {
  const { value } = hljs.highlight(code.textContent, { language: name, ignoreIllegals: true });
  const fragment = purifier.sanitize(value, {
    ALLOWED_TAGS: ["span"],
    ALLOWED_ATTR: ["class"],
    RETURN_DOM_FRAGMENT: true,
  });
  code.className = `hljs language-${name}`;
  code.replaceChildren(fragment);
}

/**
 * Colour one <code> element in place: at once if its grammar is loaded,
 * otherwise as soon as it is. Resolves when done (or at once for no language).
 */
export function highlightCode(code, language) {
  const name = language ? grammarName(language) : null;
  if (!name) return Promise.resolve();
  if (hljs?.getLanguage(name)) {
    colour(code, name);
    return Promise.resolve();
  }
  return loadGrammar(name).then(
    () => colour(code, name),
    (error) => console.warn(`highlight.js: the ${name} grammar could not be loaded`, error),
  );
}

// Syntax colours for fenced code: highlight.js core with a handful of common
// languages (vendored ES modules). Only a block that names a known language is
// coloured; there is no guessing, which would cost time on every block.

import DOMPurify from "../../vendor/dompurify/purify.es.mjs";
import hljs from "../../vendor/highlight/core.min.js";
import bash from "../../vendor/highlight/languages/bash.min.js";
import c from "../../vendor/highlight/languages/c.min.js";
import cpp from "../../vendor/highlight/languages/cpp.min.js";
import css from "../../vendor/highlight/languages/css.min.js";
import diff from "../../vendor/highlight/languages/diff.min.js";
import go from "../../vendor/highlight/languages/go.min.js";
import java from "../../vendor/highlight/languages/java.min.js";
import javascript from "../../vendor/highlight/languages/javascript.min.js";
import json from "../../vendor/highlight/languages/json.min.js";
import markdown from "../../vendor/highlight/languages/markdown.min.js";
import plaintext from "../../vendor/highlight/languages/plaintext.min.js";
import python from "../../vendor/highlight/languages/python.min.js";
import rust from "../../vendor/highlight/languages/rust.min.js";
import shell from "../../vendor/highlight/languages/shell.min.js";
import sql from "../../vendor/highlight/languages/sql.min.js";
import typescript from "../../vendor/highlight/languages/typescript.min.js";
import xml from "../../vendor/highlight/languages/xml.min.js";
import yaml from "../../vendor/highlight/languages/yaml.min.js";

const LANGUAGES = {
  bash, c, cpp, css, diff, go, java, javascript, json, markdown, plaintext, python, rust, shell,
  sql, typescript, xml, yaml,
};
for (const [name, grammar] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, grammar);
hljs.configure({ ignoreUnescapedHTML: true, throwUnescapedHTML: false });

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
 * Colour one <code> element in place. highlight.js turns the element's text
 * into escaped text inside <span class="hljs-…">; that markup still goes
 * through DOMPurify (spans and classes only) and replaceChildren, like every
 * other piece of model output, never through innerHTML.
 */
export function highlightCode(code, language) {
  if (!language || !hljs.getLanguage(language)) return;
  const { value } = hljs.highlight(code.textContent, { language, ignoreIllegals: true });
  const fragment = purifier.sanitize(value, {
    ALLOWED_TAGS: ["span"],
    ALLOWED_ATTR: ["class"],
    RETURN_DOM_FRAGMENT: true,
  });
  code.className = `hljs language-${language}`;
  code.replaceChildren(fragment);
}

// Small DOM helpers shared by the chat modules.

/** The element with this id; throws early when the template and the JS disagree. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el;
}

/** Parsed contents of a `json_script` block. */
export function readJson(id) {
  return JSON.parse(byId(id).textContent);
}

/** A deep copy of the first element inside a <template>. */
export function cloneTemplate(id) {
  return byId(id).content.firstElementChild.cloneNode(true);
}

/** "Answer %(index)s of %(count)s" with {index: 1, count: 2} → "Answer 1 of 2". */
export function format(template, values) {
  return template.replace(/%\((\w+)\)s/g, (_, key) => String(values[key] ?? ""));
}

/** A random id for `ref` fields (no crypto.randomUUID on plain-http origins). */
export function newRef() {
  return Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
}

/** Copy text; resolves false when the browser refuses (e.g. not a secure context). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

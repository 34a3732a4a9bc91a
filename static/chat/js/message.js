// One message's DOM: plain text for people, sanitized Markdown for the model,
// and the status line (stopped / failed / interrupted) of an answer.

import { StreamRenderer } from "./markdown.js";

const LIVE = new Set(["pending", "streaming"]);
const ENDED_WITH_NOTE = new Set(["stopped", "failed", "interrupted"]);

export const isLive = (message) => LIVE.has(message.status);

/** Bring `el` (a clone of #tpl-user or #tpl-assistant) up to date with message `m`. */
export function paintMessage(m, el, strings) {
  const body = el.querySelector(".msg-text");
  if (m.role !== "assistant") {
    body.textContent = m.content;
    return;
  }
  const live = isLive(m);
  el.renderer ??= new StreamRenderer(body, { copyLabel: strings.copyCode || strings.copy });
  const started = performance.now();
  el.renderer.update(m.content, { final: !live });
  // User Timing entry (DevTools' Performance panel; the browser tests read it): render cost per update.
  performance.measure("gptalk:render", { start: started, detail: { chars: m.content.length, live } });
  el.classList.toggle("is-live", live);
  el.setAttribute("aria-busy", String(live));
  el.querySelector(".typing").hidden = !(live && !m.content);
  el.querySelector(".msg-actions").hidden = live;
  // A failed or cut-off answer offers Retry/Regenerate in its status line instead.
  const hasStatusButton = m.status === "failed" || m.status === "interrupted";
  el.querySelector('.msg-actions [data-action="regenerate"]').hidden = hasStatusButton;
  el.querySelector('.msg-actions [data-action="copy"]').hidden = !m.content;
  const model = el.querySelector(".msg-model");
  model.hidden = !m.model;
  model.querySelector(".msg-model-name").textContent = m.model || "";
  const status = el.querySelector(".msg-status");
  status.hidden = !ENDED_WITH_NOTE.has(m.status);
  status.dataset.status = m.status;
  status.querySelector(".badge").textContent = strings[m.status] || "";
  const detail = {
    failed: m.error || strings.failedDetail,
    interrupted: m.error || strings.interruptedDetail,
    stopped: "",
  }[m.status];
  status.querySelector(".msg-error").textContent = detail || "";
  status.querySelector('[data-action="retry"]').hidden = m.status !== "failed";
  status.querySelector('[data-action="regenerate"]').hidden = m.status !== "interrupted";
}

/** Briefly show `text` ("Copied") on a button, then put its label back. */
export function flashLabel(button, text) {
  const label = button.getAttribute("aria-label");
  const title = button.title;
  const plain = button.classList.contains("codeblock-copy") ? button.textContent : null;
  button.classList.add("is-done");
  if (plain !== null) button.textContent = text;
  else button.setAttribute("aria-label", text);
  button.title = text;
  setTimeout(() => {
    button.classList.remove("is-done");
    if (plain !== null) button.textContent = plain;
    else if (label) button.setAttribute("aria-label", label);
    button.title = title;
  }, 1500);
}

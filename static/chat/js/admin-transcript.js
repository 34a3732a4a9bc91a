// The admin's transcript page: each message's text, rendered as the chat renders
// it — people's messages as plain text, answers as Markdown through the chat's
// own renderer and sanitizer (markdown.js). The texts arrive as JSON, never as HTML.

import { copyText, readJson } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

for (const { id, role, content } of readJson("transcript-texts")) {
  const body = document.querySelector(`.tx-body[data-message="${Number(id)}"]`);
  if (!body) continue;
  if (role === "assistant") {
    body.classList.add("markdown");
    body.replaceChildren(renderMarkdown(content));
  } else {
    body.classList.add("tx-plain");
    body.textContent = content;
  }
}

document.getElementById("transcript").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action='copy-code']");
  if (!button) return;
  if (await copyText(button.closest(".codeblock").querySelector("pre").textContent)) {
    button.textContent = "Copied";
  }
});

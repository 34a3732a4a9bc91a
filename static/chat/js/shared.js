// The read-only page behind a share link: the conversation's messages, rendered
// like the chat (sanitized Markdown for answers, plain text for people).

import { copyText, readJson } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const { strings } = readJson("share-config");
const thread = document.getElementById("thread");

for (const m of readJson("chat-messages")) {
  const article = document.createElement("article");
  article.className = `msg msg-${m.role === "user" ? "user" : "assistant"}`;
  const body = document.createElement("div");
  body.dir = "auto"; // a right-to-left message lays out right to left
  if (m.role === "user") {
    body.className = "bubble msg-text";
    body.textContent = m.content;
  } else {
    body.className = "markdown msg-text";
    body.replaceChildren(renderMarkdown(m.content, { copyLabel: strings.copyCode }));
  }
  article.append(body);
  thread.append(article);
}

thread.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action='copy-code']");
  if (!button) return;
  if (await copyText(button.closest(".codeblock").querySelector("pre").textContent)) {
    button.textContent = strings.copied;
  }
});

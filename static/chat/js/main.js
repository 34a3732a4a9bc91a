// Entry point of the chat page (templates/chat/index.html).

import { ChatApp } from "./app.js";
import { readJson } from "./dom.js";

const app = new ChatApp(readJson("chat-config"), readJson("chat-messages"));
app.start();

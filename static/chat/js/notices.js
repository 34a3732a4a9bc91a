// The connection banner above the thread and the inline alert above the composer.

import { byId } from "./dom.js";

export class Notices {
  constructor({ strings }) {
    this.strings = strings;
    this.banner = byId("banner");
    this.alert = byId("alert");
    this.alertText = byId("alert-text");
    this.timer = null;
    byId("alert-close").addEventListener("click", () => this.hideAlert());
  }

  /** kind: null (hide), "offline", "connecting", "signed-out". */
  setConnection(kind) {
    clearTimeout(this.timer);
    if (!kind) {
      this.banner.hidden = true;
      return;
    }
    this.banner.dataset.kind = kind;
    if (kind === "signed-out") {
      const link = document.createElement("a");
      link.href = `${this.strings.loginUrl}?next=${encodeURIComponent(location.pathname)}`;
      link.textContent = this.strings.logIn;
      this.banner.replaceChildren(`${this.strings.signedOut} `, link);
    } else {
      const spinner = document.createElement("span");
      spinner.className = "spinner";
      spinner.setAttribute("aria-hidden", "true");
      this.banner.replaceChildren(spinner, kind === "offline" ? this.strings.offline : this.strings.connecting);
    }
    this.banner.hidden = false;
  }

  /** Show "Connecting…" only if the first connection takes a noticeable time. */
  connectingSoon(delayMs) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.setConnection("connecting"), delayMs);
  }

  showAlert(text) {
    this.alertText.textContent = text;
    this.alert.hidden = false;
  }

  hideAlert() {
    this.alert.hidden = true;
  }
}

// HTTP calls of conversation management (chat/views_manage.py): JSON with the
// CSRF token in a header. Every call resolves to {ok, status, data, error}.

export class Api {
  constructor({ csrfToken, urls, strings }) {
    this.csrfToken = csrfToken;
    this.urls = urls;
    this.strings = strings;
  }

  url(name, id) {
    return this.urls[name].replace("{id}", String(id));
  }

  async request(url, { method = "GET", json, body } = {}) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRFToken"] = this.csrfToken;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    try {
      const response = await fetch(url, { method, headers, body, credentials: "same-origin" });
      const data = response.headers.get("Content-Type")?.includes("json") ? await response.json() : null;
      if (response.ok) return { ok: true, status: response.status, data };
      const error =
        data?.error || (response.status === 404 ? this.strings.notFound : this.strings.errorGeneric);
      return { ok: false, status: response.status, data, error };
    } catch {
      return { ok: false, status: 0, data: null, error: this.strings.offline };
    }
  }

  post(name, id, json = {}) {
    return this.request(this.url(name, id), { method: "POST", json });
  }

  detail(id) {
    return this.request(this.url("detail", id));
  }

  create(settings) {
    return this.request(this.urls.create, { method: "POST", json: settings });
  }

  search(query) {
    return this.request(`${this.urls.search}?q=${encodeURIComponent(query)}`);
  }

  importFile(file) {
    const body = new FormData();
    body.append("file", file);
    return this.request(this.urls.import, { method: "POST", body });
  }

  /** [{id, provider, name}] from GET /api/models/, or [] when it is not there (degrade to the default). */
  async models() {
    const result = await this.request(this.urls.models);
    return result.ok && Array.isArray(result.data) ? result.data.filter((m) => m && typeof m.id === "string") : [];
  }
}

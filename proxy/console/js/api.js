// The console's only way to the server: the public JSON API with the key as a Bearer header.
// Answers are never cached (cache: "no-store"); an error carries the API's own words.

// Relative to the page (/ui/), so a proxy served under a path prefix works too.
const BASE = new URL("../api/v1/", document.baseURI);

export class ApiError extends Error {
  constructor(status, body) {
    const message = body && typeof body.error === "string" ? body.error : `HTTP ${status}`;
    super(message);
    this.name = "ApiError";
    this.status = status;
    // 422's {"field": "what is wrong"}, when the API sent them.
    this.details = body && body.details && typeof body.details === "object" ? body.details : null;
  }
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  async request(method, path, { body, signal } = {}) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${this.key}` };
    const init = { method, headers, cache: "no-store", credentials: "omit", signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(new URL(path, BASE), init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, { error: "The proxy could not be reached" });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  get(path, options) {
    return this.request("GET", path, options);
  }

  post(path, body, options) {
    return this.request("POST", path, { ...options, body });
  }

  patch(path, body, options) {
    return this.request("PATCH", path, { ...options, body });
  }
}

/** A path segment from an id: ids come from the address bar, so they are escaped. */
export function seg(id) {
  return encodeURIComponent(id);
}

/** A query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** Run `fn` over `items` with at most `limit` requests in flight (a page of flags). */
export async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

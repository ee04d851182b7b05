// Drives Debian's Chromium with playwright-core for the Python e2e tests (tests/e2e/browser.py).
//
// One JSON object per line on stdin, {"id": N, "op": "...", ...}; one answer per request on
// stdout, {"id": N, "result": ...} or {"id": N, "error": "..."}, and events as they happen,
// {"event": "console" | "pageerror" | "websocket", "page": NAME, "text": "..."}.
// Launch options come as one JSON argument: {"executablePath", "args"}.
// Installs nothing: playwright-core is in node_modules/ (make test-deps), Chromium from apt.

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const options = JSON.parse(process.argv[2] || "{}");
const pages = new Map();

function emit(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

// A function's source, evaluated in the page and called with one JSON argument: tests pass
// plain JavaScript text, so they never depend on how Playwright serialises functions.
const callSource = ([source, arg]) => (0, eval)("(" + source + ")")(arg);

function page(name) {
  const found = pages.get(name);
  if (!found) throw new Error(`no page named ${name}`);
  return found;
}

const browser = await chromium.launch({
  executablePath: options.executablePath || "/usr/bin/chromium",
  headless: true,
  args: options.args || [],
});

const ops = {
  async newPage({ page: name }) {
    const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
    const created = await context.newPage();
    created.on("console", (m) => emit({ event: "console", page: name, text: `${m.type()}: ${m.text()}` }));
    created.on("pageerror", (e) => emit({ event: "pageerror", page: name, text: String(e) }));
    created.on("websocket", (ws) => {
      emit({ event: "websocket", page: name, text: `open ${ws.url()}` });
      ws.on("close", () => emit({ event: "websocket", page: name, text: `close ${ws.url()}` }));
    });
    pages.set(name, created);
    return name;
  },
  async route({ page: name, url, body, contentType, status }) {
    await page(name).route(url, (route) =>
      route.fulfill({ status: status || 200, contentType: contentType || "text/html; charset=utf-8", body }));
    return true;
  },
  async goto({ page: name, url }) {
    const response = await page(name).goto(url, { waitUntil: "load" });
    return response ? response.status() : null;
  },
  async addScript({ page: name, path }) {
    await page(name).addScriptTag({ path });
    return true;
  },
  async evaluate({ page: name, source, arg }) {
    return await page(name).evaluate(callSource, [source, arg ?? null]);
  },
  async waitFor({ page: name, source, arg, timeoutMs }) {
    const handle = await page(name).waitForFunction(callSource, [source, arg ?? null],
      { timeout: timeoutMs ?? 10000, polling: 100 });
    return await handle.jsonValue();
  },
  async text({ page: name, selector }) {
    return await page(name).locator(selector || "body").innerText();
  },
  async screenshot({ page: name, path }) {
    await page(name).screenshot({ path, fullPage: true });
    return path;
  },
  async closePage({ page: name }) {
    await page(name).context().close();
    pages.delete(name);
    return true;
  },
  async version() {
    return browser.version();
  },
};

emit({ event: "ready", text: browser.version() });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const request = JSON.parse(line);
  if (request.op === "quit") break;
  const op = ops[request.op];
  // Requests run concurrently (a test may wait on one page while it drives another).
  (async () => {
    try {
      if (!op) throw new Error(`unknown op ${request.op}`);
      emit({ id: request.id, result: (await op(request)) ?? null });
    } catch (error) {
      emit({ id: request.id, error: String(error && error.stack || error) });
    }
  })();
}
await browser.close();
process.exit(0);

/**
 * The page itself: static HTML with its CSS and script inline (no external assets), and the
 * Content-Security-Policy that allows exactly those two (by their sha-256) and connections back
 * to the page's own origin. Nothing from the bus is in it: the script fills the tables.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

/** The page and the policy to serve it with. */
export interface RenderedPage {
  readonly html: string;
  readonly csp: string;
}

const asset = (name: string): string => readFileSync(new URL(`../assets/${name}`, import.meta.url), "utf8");
const hash = (text: string): string =>
  `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

/** A table with its heading, header cells and an "empty" line. */
function section(id: string, title: string, columns: readonly string[], empty: string): string {
  return `<section>
<h2>${title} <span class="count" id="${id}-count"></span></h2>
<table id="${id}"><thead><tr>${columns.map((c) => `<th>${c}</th>`).join("")}</tr></thead><tbody></tbody></table>
<p class="empty" id="${id}-empty">${empty}</p>
</section>`;
}

/** Builds the page (once per server). */
export function renderPage(): RenderedPage {
  const css = asset("page.css");
  const js = asset("page.js");
  if (/<\/(script|style)/i.test(css + js))
    throw new Error("status page assets must not close their own element");
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>eve-tasks</title>
<style>${css}</style>
</head>
<body>
<header>
<h1>eve-tasks on <span id="node">…</span></h1>
<span class="conn" id="conn" data-conn="connecting">connecting…</span>
<span class="muted" id="where"></span>
<span class="muted" id="service-note"></span>
</header>
<main>
${section("apps", "Apps", ["name", "uuid", "state", "task ID", "memory used / limit", "restarts", "addresses", "last events", "error"], "No apps yet: publish one (npx eve-tasks apply -f examples/hello.json).")}
${section("workers", "Workers", ["worker", "replicas ($SRV)", "PIDs here", "health", "restarts", "metrics"], "No workers.")}
${section("seeds", "Seeds", ["kind", "node", "image", "state", "platform", "progress", "error"], "No seeds.")}
${section("networks", "Network instances", ["name", "node", "state", "bridge", "subnet", "gateway", "apps", "error"], "No network instances.")}
</main>
<script>${js}</script>
</body>
</html>
`;
  const csp = [
    "default-src 'none'",
    `script-src ${hash(js)}`,
    `style-src ${hash(css)}`,
    "connect-src 'self'",
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return { html, csp };
}

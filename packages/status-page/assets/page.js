// The status page's script, inlined into the page (no external assets). It keeps the rows the
// server sends over server-sent events (a snapshot, then patches) and builds the tables with
// DOM calls and textContent only: nothing from the bus is ever parsed as markup (an app's
// displayName is whatever its publisher wrote).
/* global document, window, EventSource */
"use strict";

(() => {
  const SECTIONS = ["meta", "apps", "workers", "seeds", "networks"];
  const rows = {};
  for (const s of SECTIONS) rows[s] = new Map();

  /** An element with text children (strings become text nodes) and attributes set as values. */
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs ?? {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  };
  const td = (cls, ...children) => el("td", { class: cls }, ...children);
  const badge = (value) =>
    value === null
      ? el("span", { class: "muted" }, "-")
      : el("span", { class: "badge", "data-value": value }, value);
  const dash = (v) => (v === null || v === undefined || v === "" ? "-" : String(v));

  const mib = (bytes) => `${(bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0)} MiB`;
  const ago = (iso) => {
    const ms = Date.now() - Date.parse(iso);
    if (!Number.isFinite(ms)) return "";
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  };
  const time = (iso) => (iso ? el("span", { class: "ago", "data-time": iso, title: iso }, ago(iso)) : "-");

  const memory = (a) => {
    if (a.memoryUsedBytes === null && a.memoryLimitBytes === null) return "-";
    const parts = [];
    if (a.memoryUsedBytes !== null && a.memoryLimitBytes) {
      parts.push(
        el("meter", {
          min: 0,
          max: a.memoryLimitBytes,
          value: a.memoryUsedBytes,
          high: a.memoryLimitBytes * 0.9,
        }),
        " ",
      );
    }
    parts.push(
      `${a.memoryUsedBytes === null ? "-" : mib(a.memoryUsedBytes)} / ${a.memoryLimitBytes === null ? "-" : mib(a.memoryLimitBytes)}`,
    );
    return parts;
  };

  const lines = (items, render) =>
    items.length === 0
      ? "-"
      : el(
          "ul",
          { class: "lines" },
          items.map((i) => el("li", { title: render(i) }, render(i))),
        );

  const RENDER = {
    apps: {
      order: (a, b) => (a.name ?? "\uffff").localeCompare(b.name ?? "\uffff") || a.uuid.localeCompare(b.uuid),
      row: (a) => [
        td("name", a.name === null ? el("span", { class: "muted" }, "(no config)") : a.name),
        td("uuid mono", a.uuid),
        td(
          "state",
          badge(a.state),
          a.waitingFor ? el("span", { class: "muted" }, ` waiting for ${a.waitingFor}`) : null,
          a.activate === false ? el("div", { class: "muted" }, "activate: false") : null,
          a.updatedAt ? el("div", { class: "muted" }, "updated ", time(a.updatedAt)) : null,
        ),
        td("taskid mono", dash(a.taskId)),
        td("memory", memory(a)),
        td("restarts", dash(a.restarts)),
        td(
          "addresses mono",
          lines(a.addresses, (i) => `${i.name} ${i.ip} (${i.network}, ${i.mac})`),
        ),
        td(
          "events",
          lines(a.events, (e) => `${e.time.slice(11, 19)} ${e.type} ${e.message}`),
        ),
        td("error", a.error === null ? "" : el("span", { class: "error" }, a.error)),
      ],
    },
    workers: {
      order: () => 0,
      row: (w) => [
        td("name", w.name),
        td(
          "replicas",
          w.replicas === null ? el("span", { class: "muted" }, "no service info") : String(w.replicas),
        ),
        td("pids mono", w.pids.length ? w.pids.join(" ") : "-"),
        td("health", badge(w.health), " ", el("span", { class: "muted" }, w.healthText)),
        td("restarts", dash(w.restarts)),
        td(
          "metrics",
          w.instances.length === 0
            ? "-"
            : el(
                "ul",
                { class: "lines" },
                w.instances.map((i) =>
                  el(
                    "li",
                    {},
                    i.metricsUrl
                      ? el("a", { href: i.metricsUrl, rel: "noopener noreferrer" }, i.metricsUrl)
                      : el("span", { class: "muted" }, "no metrics URL"),
                    el("span", { class: "muted" }, ` ${dash(i.node)} ${i.version} ${i.id}`),
                  ),
                ),
              ),
        ),
      ],
    },
    seeds: {
      order: (a, b) => a.key.localeCompare(b.key),
      row: (s) => [
        td("kind", s.kind),
        td("node", s.node),
        td("ref mono", s.ref),
        td("state", badge(s.state)),
        td("platform", dash(s.platform)),
        td(
          "progress",
          s.totalBytes
            ? [
                el("progress", { max: s.totalBytes, value: s.doneBytes ?? 0 }),
                ` ${mib(s.doneBytes ?? 0)} / ${mib(s.totalBytes)}`,
              ]
            : "-",
        ),
        td("error", s.error === null ? "" : el("span", { class: "error" }, s.error)),
      ],
    },
    networks: {
      order: (a, b) => a.key.localeCompare(b.key),
      row: (n) => [
        td("name", n.name),
        td("node", n.node),
        td("state", badge(n.state)),
        td("bridge mono", dash(n.bridge)),
        td("subnet mono", n.subnet),
        td("gateway mono", n.gateway),
        td("apps", String(n.apps)),
        td("error", n.error === null ? "" : el("span", { class: "error" }, n.error)),
      ],
    },
  };

  const dirty = new Set();
  let frame = 0;
  const schedule = (section) => {
    dirty.add(section);
    if (frame === 0) frame = window.requestAnimationFrame(render);
  };

  function renderMeta() {
    const m = rows.meta.get("meta");
    if (!m) return;
    document.title = `eve-tasks · ${m.node}`;
    document.getElementById("node").textContent = m.node;
    const where = document.getElementById("where");
    where.replaceChildren(
      `NATS ${m.nats}${m.natsUser ? ` as ${m.natsUser}` : ""}${m.connected ? "" : " (reconnecting)"}`,
    );
    const note = document.getElementById("service-note");
    note.textContent = m.serviceNote ? `workers: ${m.serviceNote}` : "";
  }

  function render() {
    frame = 0;
    for (const section of dirty) {
      if (section === "meta") {
        renderMeta();
        continue;
      }
      const r = RENDER[section];
      const tbody = document.querySelector(`#${section} tbody`);
      const list = [...rows[section].entries()].sort((x, y) => r.order(x[1], y[1]));
      tbody.replaceChildren(...list.map(([key, row]) => el("tr", { "data-key": key }, r.row(row))));
      document.getElementById(`${section}-count`).textContent = `(${list.length})`;
      document.getElementById(`${section}-empty`).hidden = list.length > 0;
    }
    dirty.clear();
  }

  const conn = document.getElementById("conn");
  const setConn = (state, text) => {
    conn.setAttribute("data-conn", state);
    conn.textContent = text;
  };

  const events = new EventSource("events");
  events.addEventListener("open", () => setConn("live", "live"));
  events.addEventListener("error", () => setConn("down", "disconnected: retrying"));
  events.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    for (const s of SECTIONS) {
      rows[s] = new Map(Object.entries(snap[s] ?? {}));
      schedule(s);
    }
    setConn("live", "live");
  });
  events.addEventListener("patch", (e) => {
    for (const p of JSON.parse(e.data)) {
      if (!rows[p.section]) continue;
      if (p.row === null) rows[p.section].delete(p.key);
      else rows[p.section].set(p.key, p.row);
      schedule(p.section);
    }
  });

  // "3s ago" stays true without a message.
  window.setInterval(() => {
    for (const e of document.querySelectorAll("[data-time]"))
      e.textContent = ago(e.getAttribute("data-time"));
  }, 1000);
})();

// The flash dashboard: reads /flash/ui/events (server-sent events) with the
// API key from the link's #key= fragment, kept for this tab only, and
// /flash/traces/{id} for the trace view (#trace=ID).
"use strict";

(function () {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("key")) {
    sessionStorage.setItem("flash-key", hash.get("key"));
    history.replaceState(null, "", location.pathname); // the key leaves the address bar
  }
  const key = sessionStorage.getItem("flash-key") || "";
  const auth = { Authorization: "Bearer " + key };
  const $ = (sel) => document.querySelector(sel);
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "href" || k === "tabindex" || k === "role" || k === "title") e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function row(cells, attrs) {
    const tr = el("tr", attrs);
    for (const c of cells) {
      const td = typeof c === "object" && c !== null && !(c instanceof Node) ? el("td", { class: c.cls || "" }, c.text) : el("td", {}, c);
      tr.append(td);
    }
    return tr;
  }

  function ago(t) {
    const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
    return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
  }

  const clock = (t) => new Date(t).toLocaleTimeString();
  // Span times come with nanoseconds, which Date drops: nanoseconds since
  // the epoch as a BigInt, and the milliseconds between two times.
  function nanos(t) {
    const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(t);
    if (!m) return BigInt(Date.parse(t)) * 1000000n;
    return BigInt(Date.parse(m[1] + m[3])) * 1000000n + BigInt((m[2] || "").padEnd(9, "0"));
  }
  const between = (a, b) => Number(nanos(b) - nanos(a)) / 1e6;
  const rate = (r) => (r >= 10 ? r.toFixed(0) : r.toFixed(1)) + "/s";
  const ms = (v) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2)) + " ms";
  const traceLink = (id, text) => el("a", { href: "#trace=" + id }, text);

  // What a resource looks like now: a process that exited and is not yet
  // back is restarting (the provider's last event says so).
  function shownStatus(r) {
    const ev = r.last_event || "";
    if (/ (exited|gone)\b/.test(ev)) return "restarting";
    return r.status + (r.error ? ": " + r.error : "");
  }

  function renderResources(st) {
    const body = $("#resources tbody");
    body.replaceChildren();
    for (const name of Object.keys(st.resources || {}).sort()) {
      const r = st.resources[name];
      const status = shownStatus(r);
      body.append(row([name, r.type, { text: status, cls: "status-" + status.split(":")[0] },
        (r.endpoint_urls || []).join(" "), String(r.restarts || 0), r.last_event || ""], { "data-resource": name }));
    }
  }

  function renderInstances(st) {
    const body = $("#instances tbody");
    body.replaceChildren();
    for (const i of st.instances || []) {
      const behind = Math.max(0, st.version - i.applied_version);
      body.append(row([i.resource, i.instance, String(i.applied_version),
        { text: behind === 0 ? "0" : behind + (behind === 1 ? " version" : " versions"), cls: behind ? "behind" : "" },
        { text: i.state, cls: "state-" + i.state }, ago(i.last_seen)],
        { "data-resource": i.resource, "data-instance": i.instance }));
    }
  }

  function renderEdges(edges) {
    const body = $("#edges tbody");
    body.replaceChildren();
    for (const e of edges) {
      body.append(row([e.from, e.to, String(e.calls), rate(e.rate), { text: String(e.errors), cls: e.errors ? "bad" : "" },
        rate(e.error_rate), e.latency_ms ? ms(e.latency_ms) : "–"], { "data-edge": e.from + ">" + e.to }));
    }
    if (!edges.length) body.append(el("tr", {}, el("td", { colSpan: 7, class: "hint" }, "No calls between resources yet.")));
  }

  // The graph: resources in columns by call depth (callers left of
  // callees), arrows for the edges that carried calls.
  function renderGraph(st, edges) {
    const names = new Set(Object.keys(st.resources || {}));
    for (const e of edges) { names.add(e.from); names.add(e.to); }
    const list = [...names].sort();
    const depth = Object.fromEntries(list.map((n) => [n, 0]));
    for (let i = 0; i < list.length; i++) { // longest path, bounded: cycles stop growing
      for (const e of edges) if (e.from !== e.to && depth[e.to] < depth[e.from] + 1) depth[e.to] = Math.min(depth[e.from] + 1, list.length);
    }
    const cols = {};
    for (const n of list) (cols[depth[n]] = cols[depth[n]] || []).push(n);
    const W = 260, H = 92, GX = 120, GY = 34, pos = {};
    const top = edges.some((e) => e.from === e.to) ? 50 : 10; // room for a resource's calls to itself
    let maxRow = 0, maxCol = 0;
    for (const [c, ns] of Object.entries(cols)) {
      ns.forEach((n, r) => { pos[n] = { x: 10 + c * (W + GX), y: top + r * (H + GY) }; maxRow = Math.max(maxRow, r); });
      maxCol = Math.max(maxCol, +c);
    }
    const g = $("#graph");
    g.replaceChildren();
    g.setAttribute("viewBox", `0 0 ${20 + (maxCol + 1) * W + maxCol * GX + 60} ${top + 10 + (maxRow + 1) * H + maxRow * GY}`);
    g.setAttribute("width", 20 + (maxCol + 1) * W + maxCol * GX + 60);
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
    defs.append(marker);
    g.append(defs);
    for (const e of edges) {
      const a = pos[e.from], b = pos[e.to];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const back = x2 <= x1, self = e.from === e.to;
      const d = self ? `M${a.x + W - 40},${a.y} C${a.x + W - 40},${a.y - 40} ${a.x + W + 40},${a.y + 10} ${a.x + W},${a.y + 24}`
        : back ? `M${a.x + W / 2},${a.y + H} C${a.x + W / 2},${a.y + H + 60} ${b.x + W / 2},${b.y + H + 60} ${b.x + W / 2},${b.y + H}`
        : `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
      const label = `${rate(e.rate)} · ${e.calls} calls` + (e.errors ? ` · ${e.errors} err` : "");
      const grp = svg("g", { class: "edge" + (e.error_rate > 0 ? " failing" : e.rate > 0 ? " active" : ""), "data-edge": e.from + ">" + e.to, tabindex: "0", role: "img",
        "aria-label": `${e.from} calls ${e.to}: ${label}` });
      grp.append(svg("title", {}, `${e.from} → ${e.to}: ${label}`));
      grp.append(svg("path", { d, "marker-end": "url(#arrow)" }));
      const lx = self ? a.x + W + 30 : back ? (a.x + b.x + W) / 2 : (x1 + x2) / 2;
      const ly = self ? a.y - 14 : back ? Math.max(a.y, b.y) + H + 50 : (y1 + y2) / 2 - 8;
      grp.append(svg("text", { x: lx, y: ly, "text-anchor": "middle", class: "edge-label" }, label));
      g.append(grp);
    }
    for (const n of list) {
      const r = (st.resources || {})[n];
      const p = pos[n];
      const status = r ? shownStatus(r).split(":")[0] : "external";
      const urls = r ? r.endpoint_urls || [] : [];
      const grp = svg("g", { class: "node status-" + status, "data-resource": n, tabindex: "0", role: "img",
        "aria-label": `${n}: ${status}, ${urls.length} replica(s)${r && r.restarts ? ", " + r.restarts + " restart(s)" : ""}` });
      grp.append(svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 8 }));
      grp.append(svg("text", { x: p.x + 12, y: p.y + 22, class: "node-name" }, n));
      grp.append(svg("text", { x: p.x + W - 12, y: p.y + 22, "text-anchor": "end", class: "node-status" }, status));
      const kind = r ? (r.type || "") + " · " + urls.length + (urls.length === 1 ? " replica" : " replicas") + (r.restarts ? " · " + r.restarts + (r.restarts === 1 ? " restart" : " restarts") : "") : "";
      grp.append(svg("text", { x: p.x + 12, y: p.y + 46 }, kind));
      grp.append(svg("text", { x: p.x + 12, y: p.y + 70, class: "node-url" }, urls[0] ? urls[0].replace(/^https?:\/\//, "") + (urls.length > 1 ? " +" + (urls.length - 1) : "") : ""));
      g.append(grp);
    }
  }

  // Deploys: the trail's events grouped by reconciliation, newest first;
  // in each, every step of every resource in order.
  function renderDeploys(events) {
    const byDeploy = new Map();
    for (const e of events) {
      if (!byDeploy.has(e.deploy)) byDeploy.set(e.deploy, []);
      byDeploy.get(e.deploy).push(e);
    }
    const box = $("#deploys");
    box.replaceChildren();
    for (const [n, evs] of [...byDeploy.entries()].reverse()) {
      const failed = evs.some((e) => e.error || e.step === "failed");
      const versions = evs.filter((e) => e.version).map((e) => e.version);
      const head = `Deploy ${n} · ${clock(evs[0].time)}` + (versions.length ? ` · v${versions[versions.length - 1]}` : "") + (failed ? " · failed" : "");
      const byRes = new Map();
      for (const e of evs) {
        const r = e.resource || "(all)";
        if (!byRes.has(r)) byRes.set(r, []);
        byRes.get(r).push(e);
      }
      const ol = el("ol", { class: "steps" });
      for (const [r, steps] of byRes) {
        const li = el("li", { "data-resource": r }, el("span", { class: "res" }, r), el("span", { class: "action" }, steps[0].action || ""));
        for (const s of steps) {
          li.append(el("span", { class: "step step-" + s.step + (s.error ? " error" : ""), "data-step": s.step, "data-version": String(s.version || ""),
            title: clock(s.time) + (s.error ? " — " + s.error : "") },
          s.step + (s.version ? " v" + s.version : "")));
        }
        const err = steps.find((s) => s.error);
        if (err) li.append(el("span", { class: "error" }, err.error));
        ol.append(li);
      }
      box.append(el("section", { class: "deploy" + (failed ? " failed" : ""), "data-deploy": String(n) }, el("h3", {}, head), ol));
    }
    if (!byDeploy.size) box.append(el("p", { class: "hint" }, "No reconciliation since the mothership started."));
  }

  function spanLine(s) {
    const dur = between(s.start, s.end);
    return el("li", {}, traceLink(s.trace_id, `${s.service} · ${s.name}`),
      ` ${ms(dur)}` + (s.attrs && s.attrs["flash.target"] ? ` → ${s.attrs["flash.target"]}` : "") + (s.message ? ` — ${s.message}` : ""));
  }

  function renderTraces(tr) {
    $("#tracing").textContent = tr ? "traces: collected" : "traces: off";
    $("#calls-off").hidden = !!tr;
    const errors = $("#errors"), slow = $("#slow"), recent = $("#traces");
    errors.replaceChildren();
    slow.replaceChildren();
    recent.replaceChildren();
    if (!tr) return;
    for (const s of tr.notable.errors) errors.append(spanLine(s));
    for (const s of tr.notable.slow) slow.append(spanLine(s));
    for (const t of tr.recent) {
      recent.append(el("li", { class: t.errors ? "error" : "" }, traceLink(t.trace_id, `${t.service} · ${t.root}`),
        ` ${ms(t.duration_ms)} · ${t.spans} spans · ${t.services.join(", ")}` + (t.errors ? ` · ${t.errors} errors` : "")));
    }
    if (!tr.notable.errors.length) errors.append(el("li", { class: "hint" }, "none"));
    if (!tr.recent.length) recent.append(el("li", { class: "hint" }, "none yet"));
  }

  // Which graph element or row has the keyboard focus, to give it back
  // after a re-render.
  function focused() {
    const a = document.activeElement;
    const holder = a && a.closest && a.closest("[id]");
    if (!a || !holder || !a.dataset) return null;
    if (a.dataset.edge) return `#${holder.id} [data-edge="${a.dataset.edge}"]`;
    if (a.dataset.resource) return `#${holder.id} [data-resource="${a.dataset.resource}"]`;
    return null;
  }

  function render(state) {
    const refocus = focused();
    const st = state.status;
    $("#version").textContent = st.version;
    const edges = state.edges || [];
    renderGraph(st, edges);
    renderEdges(edges);
    renderResources(st);
    renderInstances(st);
    renderDeploys(state.deploys || []);
    renderTraces(state.traces);
    const again = refocus && document.querySelector(refocus);
    if (again) again.focus();
  }

  // The trace view: spans as a waterfall, indented under their parents.
  async function showTrace(id) {
    $("#overview").hidden = true;
    const view = $("#trace");
    view.hidden = false;
    $("#trace-id").textContent = id;
    const fall = $("#waterfall");
    fall.replaceChildren(el("p", { class: "hint" }, "loading…"));
    $("#h-trace").focus();
    const resp = await fetch("/flash/traces/" + encodeURIComponent(id), { headers: auth });
    if (!resp.ok) {
      fall.replaceChildren(el("p", { class: "bad" }, resp.status === 404 ? "This trace is no longer kept." : "HTTP " + resp.status));
      return;
    }
    const { spans } = await resp.json();
    const first = spans.reduce((a, s) => (nanos(s.start) < nanos(a) ? s.start : a), spans[0].start);
    const total = Math.max(...spans.map((s) => between(first, s.end)), 0.001);
    const ids = new Set(spans.map((s) => s.span_id));
    const kids = new Map();
    for (const s of spans) {
      const p = ids.has(s.parent_id) ? s.parent_id : "";
      if (!kids.has(p)) kids.set(p, []);
      kids.get(p).push(s);
    }
    $("#trace-summary").textContent = `${spans.length} spans · ${ms(total)} · ` + [...new Set(spans.map((s) => s.service))].sort().join(", ");
    fall.replaceChildren();
    const walk = (parent, depth) => {
      for (const s of kids.get(parent) || []) {
        const t0 = between(first, s.start), d = between(s.start, s.end);
        const attrs = Object.entries(s.attrs || {}).map(([k, v]) => k + "=" + v).join("  ");
        const bar = el("div", { class: "bar kind-" + s.kind + (s.error ? " error" : "") });
        bar.style.left = (100 * t0 / total) + "%";
        bar.style.width = Math.max(0.3, 100 * d / total) + "%";
        fall.append(el("div", { class: "span", role: "listitem", tabindex: "0", "data-service": s.service, title: attrs,
          "aria-label": `${s.service} ${s.name}, ${ms(d)} at +${ms(t0)}${s.error ? ", failed" : ""}` },
        el("div", { class: "label" }, el("span", { class: "indent" }, "\u00a0".repeat(depth * 3)),
          el("span", { class: "svc" }, s.service), " " + s.name, el("span", { class: "dur" }, " " + ms(d) +
            (s.attrs && s.attrs["flash.outcome"] ? " · " + s.attrs["flash.outcome"] : "") +
            (s.attrs && s.attrs["flash.attempt"] > 1 ? " · attempt " + s.attrs["flash.attempt"] : "")),
          s.message ? el("span", { class: "bad" }, " — " + s.message) : null),
        el("div", { class: "track" }, bar)));
        walk(s.span_id, depth + 1);
      }
    };
    walk("", 0);
  }

  function route() {
    const m = /^#trace=([0-9a-f]{32})$/.exec(location.hash);
    if (m) {
      showTrace(m[1]).catch((err) => $("#waterfall").replaceChildren(el("p", { class: "bad" }, err.message)));
      return;
    }
    $("#trace").hidden = true;
    $("#overview").hidden = false;
  }
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("#trace").hidden) location.hash = "";
  });
  $("#trace-close").addEventListener("click", (ev) => { ev.preventDefault(); location.hash = ""; });

  // fetch, not EventSource: EventSource cannot send the Authorization header.
  async function stream() {
    const resp = await fetch("/flash/ui/events", { headers: auth });
    if (!resp.ok) throw new Error("HTTP " + resp.status + (resp.status === 401 ? ": open the link flash prints (it carries the key)" : ""));
    const conn = $("#conn");
    conn.textContent = "live";
    conn.className = "";
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended");
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) render(JSON.parse(data));
      }
    }
  }

  async function run() {
    for (;;) {
      try {
        await stream();
      } catch (err) {
        const conn = $("#conn");
        conn.textContent = "disconnected (" + err.message + "), retrying";
        conn.className = "down";
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  route();
  run();
})();

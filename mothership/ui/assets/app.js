// The flash dashboard: reads /flash/ui/events (server-sent events) with the
// API key from the link's #key= fragment, kept for this tab only.
"use strict";

(function () {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("key")) {
    sessionStorage.setItem("flash-key", hash.get("key"));
    history.replaceState(null, "", location.pathname); // the key leaves the address bar
  }
  const key = sessionStorage.getItem("flash-key") || "";
  const conn = document.getElementById("conn");

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function ago(t) {
    const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
    return s + " s ago";
  }

  function render(state) {
    const st = state.status;
    document.getElementById("version").textContent = st.version;
    const res = document.querySelector("#resources tbody");
    res.replaceChildren();
    for (const name of Object.keys(st.resources || {}).sort()) {
      const r = st.resources[name];
      const tr = document.createElement("tr");
      tr.dataset.resource = name;
      cell(tr, name);
      cell(tr, r.type);
      cell(tr, r.status + (r.error ? ": " + r.error : ""), "status-" + r.status);
      cell(tr, (r.endpoint_urls || []).join(" "));
      cell(tr, String(r.restarts || 0));
      cell(tr, r.last_event || "");
      res.appendChild(tr);
    }
    const inst = document.querySelector("#instances tbody");
    inst.replaceChildren();
    for (const i of st.instances || []) {
      const tr = document.createElement("tr");
      cell(tr, i.resource);
      cell(tr, i.instance);
      cell(tr, String(i.applied_version));
      cell(tr, String(Math.max(0, st.version - i.applied_version)));
      cell(tr, i.state, "state-" + i.state);
      cell(tr, ago(i.last_seen));
      inst.appendChild(tr);
    }
    const list = document.getElementById("deploys");
    list.replaceChildren();
    for (const e of (state.deploys || []).slice().reverse()) {
      const li = document.createElement("li");
      const when = new Date(e.time).toLocaleTimeString();
      li.textContent = when + "  " + (e.resource || "-") + "  " + e.action + "  " + e.step +
        (e.version ? "  v" + e.version : "") + (e.error ? "  " + e.error : "");
      if (e.error) li.className = "error";
      list.appendChild(li);
    }
  }

  // fetch, not EventSource: EventSource cannot send the Authorization header.
  async function stream() {
    const resp = await fetch("/flash/ui/events", { headers: { Authorization: "Bearer " + key } });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
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
        conn.textContent = "disconnected (" + err.message + "), retrying";
        conn.className = "down";
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  run();
})();

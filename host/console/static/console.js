// RouteIQ operator console: live updates, charts, and the actions, all through the
// admin API (session cookie + CSRF token). No framework, no inline code (CSP: 'self').
"use strict";

(function () {
  const MASK = "••••••";
  const KEEP = {}; // a masked secret left blank: not sent, the running value stays
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const csrf = meta("csrf-token");
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) node.append(c);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // ---------------------------------------------------------------- the admin API
  async function api(method, url, body, contentType) {
    const headers = { "x-csrf-token": csrf };
    let payload = body;
    if (typeof body === "string") {
      headers["content-type"] = contentType || "application/json"; // a file's text, sent as it is
    } else if (body !== undefined && !(body instanceof ArrayBuffer)) {
      payload = JSON.stringify(body);
      headers["content-type"] = contentType || "application/json";
    } else if (body instanceof ArrayBuffer) {
      headers["content-type"] = "application/wasm";
    }
    const answer = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
    if (answer.status === 401) {
      window.location.assign("/ui/login");
      throw new Error("the console session ended: log in again");
    }
    let data = null;
    try { data = await answer.json(); } catch (_) { data = null; }
    if (!answer.ok) {
      const message = data && data.error ? data.error.message || JSON.stringify(data.error) : `HTTP ${answer.status}`;
      const err = new Error(message);
      err.status = answer.status;
      err.code = data && data.error ? data.error.code : undefined;
      throw err;
    }
    return data;
  }

  function flash(message, kind) {
    const box = $("#flash");
    if (!box) return;
    box.textContent = message;
    box.className = `flash ${kind || "ok"}`;
    box.hidden = false;
  }

  function show(id, message) {
    const node = $(id);
    if (!node) return;
    node.textContent = message;
    node.hidden = !message;
  }

  // Re-read parts of a page from the server (the same rendering as a reload).
  async function refreshFrom(url, selectors) {
    const answer = await fetch(url, { credentials: "same-origin" });
    if (answer.status !== 200) return;
    const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
    for (const sel of selectors) {
      const now = $(sel), next = $(sel, fresh);
      if (now && next) now.replaceWith(document.importNode(next, true));
    }
    localTimes();
    drawBars();
  }

  // ---------------------------------------------------------------- times
  function localTimes() {
    for (const t of $$("time[datetime]")) {
      const d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) {
        t.textContent = d.toLocaleString();
        t.title = t.getAttribute("datetime");
      }
    }
  }

  // ---------------------------------------------------------------- charts
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706"];

  function lineChart(box, points, fields, unit) {
    box.replaceChildren();
    const W = 320, H = 120, L = 48, B = 18, T = 8, R = 10;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "line", "aria-hidden": "true" });
    const values = points.flatMap((p) => fields.map((f) => p[f])).filter((v) => typeof v === "number");
    if (!points.length) {
      box.append(el("p", { class: "empty", text: "Collecting: the first point appears after one sampling interval." }));
      return;
    }
    const max = Math.max(1e-9, ...values) * 1.1;
    const t0 = points[0].at, t1 = points[points.length - 1].at;
    const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
    const y = (v) => H - B - (v / max) * (H - B - T);
    chart.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    chart.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    const top = svg("text", { x: L - 4, y: T + 8, "text-anchor": "end", class: "tick" });
    top.textContent = fmt(max, unit === "%" ? "%" : "");
    chart.append(top);
    const zero = svg("text", { x: L - 4, y: H - B, "text-anchor": "end", class: "tick" });
    zero.textContent = "0";
    chart.append(zero);
    for (const [at, anchor] of t1 > t0 ? [[t0, "start"], [t1, "end"]] : [[t0, "start"]]) {
      const label = svg("text", { x: x(at), y: H - 4, "text-anchor": anchor, class: "tick" });
      label.textContent = new Date(at * 1000).toLocaleTimeString();
      chart.append(label);
    }
    fields.forEach((f, i) => {
      const pts = points.filter((p) => typeof p[f] === "number").map((p) => `${x(p.at).toFixed(1)},${y(p[f]).toFixed(1)}`);
      if (pts.length) chart.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2 }));
      if (pts.length === 1) { const [cx, cy] = pts[0].split(","); chart.append(svg("circle", { cx, cy, r: 3, fill: COLORS[i % COLORS.length] })); }
    });
    box.append(chart);
    const last = points[points.length - 1];
    const legend = el("p", { class: "legend" });
    fields.forEach((f, i) => {
      legend.append(el("span", { class: `swatch swatch-${i}` }), ` ${f.replace("_ms", "")}: ${last[f] === null || last[f] === undefined ? "—" : fmt(last[f], unit)}  `);
    });
    box.append(legend);
  }

  function fmt(v, unit) {
    if (unit === "%") return `${(v * 100).toFixed(1)}%`;
    if (Math.abs(v) >= 100) return `${v.toFixed(0)}${unit ? " " + unit : ""}`;
    return `${v.toFixed(2)}${unit ? " " + unit : ""}`;
  }

  function drawSeries(series) {
    for (const box of $$("[data-chart]")) {
      const fields = box.dataset.chart.split(",");
      const plugin = box.dataset.plugin;
      let points = series;
      if (plugin) points = series.map((p) => ({ at: p.at, [fields[0]]: (p[fields[0]] || {})[plugin] || 0 }));
      else if (box.dataset.unit === "%") points = series.map((p) => ({ at: p.at, error_rate: p.error_rate }));
      lineChart(box, points, fields, box.dataset.unit);
    }
  }

  function drawBars() {
    for (const box of $$("[data-bars]")) {
      const rows = JSON.parse(box.dataset.bars || "[]");
      box.replaceChildren();
      if (!rows.length) {
        box.append(el("p", { class: "empty", text: "No spend yet: calls with a virtual key are charged here." }));
        continue;
      }
      const max = Math.max(1e-12, ...rows.map((r) => r.spend || 0));
      const list = el("ul", { class: "barlist" });
      for (const r of rows.slice(0, 12)) {
        const bar = el("span", { class: "bar" });
        bar.style.width = `${Math.max(1, ((r.spend || 0) / max) * 100)}%`; // CSSOM: allowed by the CSP
        list.append(el("li", {}, el("span", { class: "bar-label", text: r.label }), bar, el("span", { class: "bar-value", text: `$${(r.spend || 0).toFixed(4)} · ${r.requests} req` })));
      }
      box.append(list);
    }
  }

  // ---------------------------------------------------------------- live updates
  function stateBadge(state) {
    return el("span", { class: `state state-${state}`, text: state });
  }

  function applyLive(data) {
    drawSeries(data.series || []);
    const states = $("[data-live='plugin-states']");
    if (states && data.plugins) {
      states.replaceChildren(...data.plugins.map((p) => el("tr", {}, el("td", {}, el("a", { href: `/ui/plugins/${encodeURIComponent(p.name)}`, text: p.name })), el("td", {}, stateBadge(p.state)), el("td", { text: p.traps }))));
    }
    for (const row of $$("tr[data-plugin]")) {
      const p = (data.plugins || []).find((q) => q.name === row.dataset.plugin);
      if (!p) continue;
      const state = $("[data-field='state']", row);
      if (state) { state.textContent = p.state; state.className = `state state-${p.state}`; }
      const traps = $("[data-field='traps']", row);
      if (traps) traps.textContent = p.traps;
      const reason = $("[data-field='quarantine_reason']", row);
      if (reason) reason.textContent = p.quarantine_reason || "";
    }
    const badge = $("[data-plugin-state]");
    if (badge) {
      const p = (data.plugins || []).find((q) => q.name === badge.dataset.pluginState);
      if (p) {
        badge.textContent = p.state;
        badge.className = `state state-${p.state}`;
        const reason = $("#quarantine-reason");
        if (reason) reason.textContent = p.quarantine_reason || "not quarantined";
      }
    }
    const breakers = $("[data-live='breakers']");
    if (breakers && data.breakers && data.breakers.length) {
      breakers.replaceChildren(...data.breakers.map((b) => el("tr", {}, el("td", { text: b.name }), el("td", {}, stateBadge(b.state)), el("td", { text: Object.entries(b.transitions || {}).map(([k, n]) => `${k}: ${n}`).join(" ") }))));
    }
    const nodes = $("[data-live='nodes']");
    if (nodes && data.nodes && data.nodes.nodes) {
      nodes.replaceChildren(...data.nodes.nodes.map((n) => el("tr", {}, el("td", { text: n.node }), el("td", { text: n.pid || "" }), el("td", { text: n.version === null || n.version === undefined ? "—" : n.version }), el("td", { text: n.converged ? "yes" : "no" }))));
    }
  }

  function startLive() {
    if (!$("[data-live]") && !$("[data-plugin-state]")) return;
    let period = 5000;
    const tick = async () => {
      try {
        const answer = await fetch("/ui/live", { credentials: "same-origin" });
        if (answer.status === 401) { window.location.assign("/ui/login"); return; }
        const data = await answer.json();
        period = Math.max(1000, (data.poll_s || 5) * 1000);
        applyLive(data);
        document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
      } catch (_) { /* the next tick tries again */ }
      setTimeout(tick, period);
    };
    tick();
  }

  // ---------------------------------------------------------------- plugin actions
  function pluginActions() {
    const paths = {
      quarantine: ["POST", (n) => `/admin/plugins/${n}/quarantine`, "Quarantined"],
      release: ["POST", (n) => `/admin/plugins/${n}/release`, "Released"],
      "module-reset": ["DELETE", (n) => `/admin/plugins/${n}/module`, "The file's module serves again"],
      "config-reset": ["DELETE", (n) => `/admin/plugins/${n}/config`, "The file's config applies again"],
    };
    for (const button of $$("button[data-action]")) {
      button.addEventListener("click", async () => {
        const [method, path, done] = paths[button.dataset.action];
        const name = encodeURIComponent(button.dataset.plugin);
        button.disabled = true;
        try {
          await api(method, path(name));
          flash(`${done}: ${button.dataset.plugin}`, "ok");
          await refreshFrom(window.location.pathname, ["#plugin-state", "#quarantine-reason", "#plugin-sha256"]);
          if (button.dataset.action === "config-reset") window.location.reload();
        } catch (err) {
          flash(`Refused: ${err.message}`, "error");
        } finally {
          button.disabled = false;
        }
      });
    }
    const swap = $("#swap-form");
    if (swap) {
      swap.addEventListener("submit", async (event) => {
        event.preventDefault();
        show("#swap-error", "");
        show("#swap-ok", "");
        const file = $("#module-file").files[0];
        if (!file) { show("#swap-error", "Choose a .wasm file first."); return; }
        try {
          const done = await api("POST", `/admin/plugins/${encodeURIComponent(swap.dataset.plugin)}/module`, await file.arrayBuffer());
          show("#swap-ok", `Swapped: now serving sha256 ${done.sha256}`);
          await refreshFrom(window.location.pathname, ["#plugin-state", "#plugin-sha256"]);
        } catch (err) {
          show("#swap-error", err.message);
        }
      });
    }
  }

  // ---------------------------------------------------------------- config form
  const typeOf = (schema) => (Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type) || (schema.properties ? "object" : undefined);
  const fieldId = (path) => "cfg-" + path.map((p) => String(p).replace(/[^A-Za-z0-9_-]/g, "_")).join("-");

  function buildFields(schema, value, path, container, required) {
    const type = typeOf(schema);
    const name = path.length ? String(path[path.length - 1]) : "config";
    const id = fieldId(path);
    if (type === "object" && schema.properties) {
      const set = path.length ? el("fieldset", { id }) : container;
      if (path.length) set.append(el("legend", { text: name }));
      const req = new Set(schema.required || []);
      for (const [key, sub] of Object.entries(schema.properties)) {
        buildFields(sub || {}, value && typeof value === "object" ? value[key] : undefined, path.concat(key), set, req.has(key));
      }
      if (path.length) container.append(set);
      return;
    }
    const wrap = el("div", { class: "field", "data-path": JSON.stringify(path) });
    const help = schema.description ? el("small", { id: `${id}-help`, text: schema.description }) : null;
    const error = el("p", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
    const described = [help ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(" ");
    const label = el("label", { for: id, text: name + (required ? " (required)" : "") });
    let input;
    const secret = value === MASK || schema.writeOnly || schema.format === "password";
    if (Array.isArray(schema.enum)) {
      input = el("select", { id, name, "aria-describedby": described });
      input.append(el("option", { value: "", text: "(not set)" }));
      for (const option of schema.enum) input.append(el("option", { value: JSON.stringify(option), text: String(option), selected: JSON.stringify(option) === JSON.stringify(value) }));
      wrap.dataset.kind = "enum";
    } else if (type === "boolean") {
      input = el("select", { id, name, "aria-describedby": described });
      for (const [v, t] of [["", "(not set)"], ["true", "true"], ["false", "false"]]) input.append(el("option", { value: v, text: t, selected: value === undefined ? v === "" : String(value) === v }));
      wrap.dataset.kind = "boolean";
    } else if (type === "integer" || type === "number") {
      input = el("input", { id, name, type: "number", step: type === "integer" ? "1" : "any", value: value === undefined ? "" : value, "aria-describedby": described });
      wrap.dataset.kind = type;
    } else if (type === "string") {
      input = el("input", { id, name, type: secret ? "password" : "text", value: secret || value === undefined ? "" : value, placeholder: secret && value !== undefined ? "unchanged (secret)" : "", autocomplete: "off", "aria-describedby": described });
      wrap.dataset.kind = "string";
    } else if (type === "array" && schema.items && ["string", "integer", "number"].includes(typeOf(schema.items))) {
      input = el("textarea", { id, name, rows: 3, "aria-describedby": described });
      input.value = Array.isArray(value) ? value.join("\n") : "";
      wrap.dataset.kind = `list-${typeOf(schema.items)}`;
      label.textContent += " (one per line)";
    } else {
      input = el("textarea", { id, name, rows: 4, class: "json", "aria-describedby": described });
      input.value = value === undefined ? "" : JSON.stringify(value, null, 2);
      wrap.dataset.kind = "json";
      label.textContent += " (JSON)";
    }
    if (secret && value !== undefined) wrap.dataset.secret = "1";
    wrap.dataset.required = required ? "1" : "";
    wrap.append(label, input);
    if (help) wrap.append(help);
    wrap.append(error);
    wrap._schema = schema;
    container.append(wrap);
  }

  function readField(wrap) {
    const input = $("input, select, textarea", wrap);
    const raw = input.value;
    const kind = wrap.dataset.kind;
    if (raw.trim() === "") return wrap.dataset.secret ? KEEP : undefined;
    if (kind === "enum") return JSON.parse(raw);
    if (kind === "boolean") return raw === "true";
    if (kind === "integer" || kind === "number") {
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new Error("must be a number");
      return n;
    }
    if (kind === "string") return raw;
    if (kind.startsWith("list-")) {
      const items = raw.split("\n").map((s) => s.trim()).filter((s) => s !== "");
      if (kind === "list-string") return items;
      return items.map((s) => { const n = Number(s); if (!Number.isFinite(n)) throw new Error(`${JSON.stringify(s)} is not a number`); return n; });
    }
    try { return JSON.parse(raw); } catch (err) { throw new Error(`not valid JSON: ${err.message}`); }
  }

  // The JSON Schema keywords a form can break, checked before anything is sent (the
  // server checks the whole schema again).
  function check(schema, value) {
    const type = typeOf(schema);
    const problems = [];
    if (value === undefined || value === KEEP) return problems;
    const is = {
      string: typeof value === "string", boolean: typeof value === "boolean", integer: Number.isInteger(value),
      number: typeof value === "number", array: Array.isArray(value), object: value !== null && typeof value === "object" && !Array.isArray(value),
    };
    if (type && is[type] === false) { problems.push(`must be ${type === "integer" ? "an integer" : "a " + type}`); return problems; }
    if (Array.isArray(schema.enum) && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) problems.push(`must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}`);
    if (typeof value === "number") {
      if (schema.minimum !== undefined && value < schema.minimum) problems.push(`must be ≥ ${schema.minimum}`);
      if (schema.maximum !== undefined && value > schema.maximum) problems.push(`must be ≤ ${schema.maximum}`);
      if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) problems.push(`must be > ${schema.exclusiveMinimum}`);
      if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) problems.push(`must be < ${schema.exclusiveMaximum}`);
    }
    if (typeof value === "string") {
      if (schema.minLength !== undefined && value.length < schema.minLength) problems.push(`must have at least ${schema.minLength} character(s)`);
      if (schema.maxLength !== undefined && value.length > schema.maxLength) problems.push(`must have at most ${schema.maxLength} characters`);
      if (schema.pattern) { try { if (!new RegExp(schema.pattern, "u").test(value)) problems.push(`must match ${schema.pattern}`); } catch (_) { /* server decides */ } }
    }
    if (Array.isArray(value)) {
      if (schema.minItems !== undefined && value.length < schema.minItems) problems.push(`needs at least ${schema.minItems} item(s)`);
      if (schema.maxItems !== undefined && value.length > schema.maxItems) problems.push(`takes at most ${schema.maxItems} items`);
      if (schema.items) value.forEach((v, i) => check(schema.items, v).forEach((p) => problems.push(`item ${i + 1} ${p}`)));
    }
    return problems;
  }

  function setError(wrap, message) {
    const error = $(".field-error", wrap);
    const input = $("input, select, textarea", wrap);
    error.textContent = message || "";
    error.hidden = !message;
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  }

  function setIn(doc, path, value) {
    let node = doc;
    path.slice(0, -1).forEach((p) => { if (!node[p] || typeof node[p] !== "object") node[p] = {}; node = node[p]; });
    node[path[path.length - 1]] = value;
  }

  // RFC 7396: what turns `before` into `after` (null removes; KEEP leaves a secret alone).
  function mergePatch(before, after) {
    if (!after || typeof after !== "object" || Array.isArray(after) || !before || typeof before !== "object" || Array.isArray(before)) return after;
    const patch = {};
    for (const key of Object.keys(before)) if (!(key in after)) patch[key] = null;
    for (const [key, value] of Object.entries(after)) {
      if (value === KEEP) continue;
      if (JSON.stringify(before[key]) === JSON.stringify(value)) continue;
      const inner = mergePatch(before[key], value);
      if (inner && typeof inner === "object" && !Array.isArray(inner) && Object.keys(inner).length === 0) continue;
      patch[key] = inner;
    }
    return patch;
  }

  function diffLines(patch, before, prefix) {
    const lines = [];
    for (const [key, value] of Object.entries(patch)) {
      const path = prefix ? `${prefix}.${key}` : key;
      const old = before && typeof before === "object" ? before[key] : undefined;
      if (value && typeof value === "object" && !Array.isArray(value) && old && typeof old === "object" && !Array.isArray(old)) {
        lines.push(...diffLines(value, old, path));
        continue;
      }
      if (old !== undefined) lines.push(`- ${path}: ${JSON.stringify(old)}`);
      if (value !== null) lines.push(`+ ${path}: ${old === MASK ? "(new secret)" : JSON.stringify(value)}`);
    }
    return lines;
  }

  function configForm() {
    const form = $("#config-form");
    if (!form) return;
    const schema = JSON.parse(form.dataset.schema || "null");
    const running = JSON.parse(form.dataset.config || "{}");
    const fields = $("#config-fields");
    const objectSchema = schema && typeOf(schema) === "object" && schema.properties;
    if (objectSchema) buildFields(schema, running, [], fields, false);
    else buildFields(schema || {}, running, ["config"], fields, true);
    let pending = null;

    const collect = () => {
      let ok = true;
      let doc = objectSchema ? {} : undefined;
      // Keys of the running config the form has no field for stay as they are.
      if (objectSchema && running && typeof running === "object") {
        for (const [k, v] of Object.entries(running)) if (!(k in schema.properties)) doc[k] = v;
      }
      for (const wrap of $$(".field", fields)) {
        const path = JSON.parse(wrap.dataset.path);
        let value;
        try {
          value = readField(wrap);
        } catch (err) {
          setError(wrap, err.message); ok = false; continue;
        }
        const problems = value === undefined && wrap.dataset.required ? ["is required"] : check(wrap._schema, value);
        setError(wrap, problems.join("; "));
        if (problems.length) { ok = false; continue; }
        if (value === undefined) continue;
        if (objectSchema) setIn(doc, path, value); else doc = value;
      }
      return ok ? doc : null;
    };

    $("#config-review").addEventListener("click", () => {
      show("#config-error", ""); show("#config-ok", "");
      const doc = collect();
      $("#config-diff").hidden = true;
      if (doc === null) { show("#config-error", "Fix the fields marked above; nothing was sent."); const bad = $("[aria-invalid='true']", fields); if (bad) bad.focus(); return; }
      pending = mergePatch(running, doc);
      const lines = pending && typeof pending === "object" && !Array.isArray(pending) ? diffLines(pending, running, "") : [`= ${JSON.stringify(pending)}`];
      $("#config-diff-text").textContent = lines.length ? lines.join("\n") : "No change against the running config.";
      $("#config-apply").disabled = !lines.length;
      $("#config-diff").hidden = false;
      $("#config-diff-text").focus();
    });
    $("#config-cancel").addEventListener("click", () => { $("#config-diff").hidden = true; pending = null; });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (pending === null) return;
      const name = encodeURIComponent(form.dataset.plugin);
      try {
        const isPatch = objectSchema || (pending && typeof pending === "object" && !Array.isArray(pending) && running && typeof running === "object");
        if (isPatch) await api("PATCH", `/admin/plugins/${name}/config`, pending, "application/merge-patch+json");
        else await api("PUT", `/admin/plugins/${name}/config`, pending);
        $("#config-diff").hidden = true;
        show("#config-ok", "Applied: the plugin runs with the new configuration.");
        window.setTimeout(() => window.location.reload(), 600);
      } catch (err) {
        // The server's schema errors name the path (config.a.b[2]: ...): show them at the field.
        let placed = false;
        for (const part of err.message.split("; ")) {
          const m = /^config((?:\.[^.:\[]+)*)(?:\[\d+\])*: (.*)$/.exec(part);
          if (!m) continue;
          let path = m[1] ? m[1].slice(1).split(".") : [];
          let message = m[2];
          const req = /^'([^']+)' is a required property$/.exec(message);
          if (req) { path = path.concat(req[1]); message = "is required"; }
          const target = objectSchema ? $(`#${fieldId(path)}`) : $(`#${fieldId(["config"])}`);
          if (target) { setError(target.closest(".field"), message); placed = true; }
        }
        show("#config-error", `Refused by the server, nothing was applied: ${err.message}`);
        if (placed) { const bad = $("[aria-invalid='true']", fields); if (bad) bad.focus(); }
        $("#config-diff").hidden = true;
      }
    });
  }

  // ---------------------------------------------------------------- keys
  function keyActions() {
    const form = $("#key-form");
    if (form) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        show("#key-error", "");
        const body = {};
        for (const input of $$("input", form)) {
          const v = input.value.trim();
          if (!v) continue;
          if (input.name === "max_budget") body.max_budget = Number(v);
          else if (input.name === "models") body.models = v.split(",").map((s) => s.trim()).filter(Boolean);
          else body[input.name] = v;
        }
        try {
          const made = await api("POST", "/key/generate", body);
          revealKey(made.key);
          form.reset();
          await refreshFrom("/ui/keys", ["#key-rows"]);
        } catch (err) {
          show("#key-error", err.message);
        }
      });
    }
    const teams = $("#team-form");
    if (teams) {
      teams.addEventListener("submit", async (event) => {
        event.preventDefault();
        show("#team-error", "");
        const body = {};
        for (const input of $$("input", teams)) {
          const v = input.value.trim();
          if (v) body[input.name] = input.name === "max_budget" ? Number(v) : v;
        }
        try {
          const team = await api("POST", "/team/new", body);
          flash(`Created team ${team.team_id}`, "ok");
          teams.reset();
          await refreshFrom("/ui/keys", ["#team-rows", "#teams"]);
        } catch (err) {
          show("#team-error", err.message);
        }
      });
    }
    document.addEventListener("click", async (event) => {
      const teamButton = event.target.closest("button[data-team-action]");
      if (teamButton) {
        const id = teamButton.closest("tr").dataset.team;
        if (!window.confirm(`Delete team ${id} and its keys?`)) return;
        try {
          await api("POST", "/team/delete", { team_ids: [id] });
          flash(`Deleted team ${id}`, "ok");
          await refreshFrom("/ui/keys", ["#team-rows", "#key-rows", "#teams"]);
        } catch (err) {
          flash(`Refused: ${err.message}`, "error");
        }
        return;
      }
      const button = event.target.closest("button[data-key-action]");
      if (!button) return;
      const row = button.closest("tr");
      const token = row.dataset.token;
      const action = button.dataset.keyAction;
      try {
        if (action === "delete") {
          if (!window.confirm(`Revoke ${row.dataset.keyName} for good?`)) return;
          await api("POST", "/key/delete", { keys: [token] });
          flash(`Revoked ${row.dataset.keyName}`, "ok");
        } else if (action === "regenerate") {
          const fresh = await api("POST", "/key/regenerate", { key: token });
          revealKey(fresh.key);
          flash(`Rotated ${row.dataset.keyName}: the old key stopped working`, "ok");
        } else if (action === "budget") {
          const v = $("input.budget", row).value.trim();
          if (v !== "" && !(Number(v) >= 0)) throw new Error("the budget must be a number ≥ 0");
          await api("POST", "/key/update", { key: token, max_budget: v === "" ? null : Number(v) });
          flash(`Budget of ${row.dataset.keyName} saved`, "ok");
        } else {
          await api("POST", `/key/${action}`, { key: token });
          flash(`${action === "block" ? "Blocked" : "Unblocked"} ${row.dataset.keyName}`, "ok");
        }
        await refreshFrom("/ui/keys", ["#key-rows"]);
      } catch (err) {
        flash(`Refused: ${err.message}`, "error");
      }
    });
  }

  function artifactUpload() {
    const form = $("#artifact-form");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      show("#artifact-error", ""); show("#artifact-ok", "");
      const file = $("#artifact-file").files[0];
      if (!file) { show("#artifact-error", "Choose an artifact file first."); return; }
      try {
        const loaded = await api("PUT", "/admin/routing/artifact", await file.text());
        show("#artifact-ok", `Loaded: sha256 ${loaded.sha256 || ""}`);
      } catch (err) {
        show("#artifact-error", err.message);
      }
    });
  }

  function revealKey(key) {
    const box = $("#new-key");
    if (!box) return;
    $("#new-key-value").value = key;
    box.hidden = false;
    $("#new-key-value").focus();
    $("#new-key-value").select();
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes();
    drawBars();
    pluginActions();
    configForm();
    keyActions();
    artifactUpload();
    startLive();
  });
})();

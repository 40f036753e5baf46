/* Shared helpers: API calls with the CSRF header, formatting, the live socket, alert toasts. */
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function api(method, url, body) {
    const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (method !== "GET") opts.headers["X-CSRFToken"] = csrf();
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const resp = await fetch(url, opts);
    if (resp.status === 204) return null;
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) { const err = new Error(data.message || resp.statusText); err.status = resp.status; err.data = data; throw err; }
    return data;
  }

  // An alert's numbers in the unit of its series, by the rules of alerts/templates.py (fmt_value):
  // a percent move (moving_*_pct) is in % whatever the series, a volume a whole number, a ratio or
  // z-score 2 decimals, an RSI 1, a price 2 (4 significant digits below 1). The units are the
  // vocabulary's (events/vocabulary.py), which every page carries in #tb-vocabulary (base.html);
  // the patterns below cover names it does not know (the stale-feed alert). Tested in node
  // (tests/web/test_alert_format_js.py).
  let vocabulary = { units: {}, percent_ops: [], price_levels: ["price", "close"], move_ops: [] };
  function useVocabulary(v) { vocabulary = v || vocabulary; }
  if (typeof document !== "undefined") {
    const node = document.getElementById("tb-vocabulary");
    if (node) useVocabulary(JSON.parse(node.textContent));
  }
  function unitOf(series, op) {
    const s = series || "", o = op || "";
    if (vocabulary.percent_ops.includes(o)) return "percent";
    const known = vocabulary.units[s];
    if (known) return known === "count" ? "volume" : known;  // a count is shown as a volume is
    if (o.endsWith("_pct") || s.endsWith("_pct") || s.startsWith("volatility_")) return "percent";
    if (s === "volume" || s === "count" || s.startsWith("volume_avg_")) return "volume";
    if (s === "volume_ratio" || s.startsWith("zscore_")) return "ratio";
    if (s.startsWith("rsi_")) return "index";
    if (s === "feed") return "seconds";
    return "price";
  }
  function alertPrice(v) {
    const decimals = v === 0 || Math.abs(v) >= 1 ? 2 : Math.max(2, 3 - Math.floor(Math.log10(Math.abs(v))));
    return v.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: decimals });
  }
  function windowWords(seconds) {
    const whole = Math.round(seconds);
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) if (whole >= size && whole % size === 0) return `${whole / size} ${unit}`;
    return `${whole} s`;
  }
  function seriesValue(v, series, op) {
    if (v == null || !Number.isFinite(Number(v))) return "—";
    const n = Number(v);
    switch (unitOf(series, op)) {
      case "percent": return n.toFixed(2) + " %";
      case "volume": return Math.round(n).toLocaleString();
      case "ratio": return n.toFixed(2);
      case "index": return n.toFixed(1).replace(/\.0$/, "");
      case "seconds": return windowWords(n);
      default: return alertPrice(n);
    }
  }

  // Whether an alert's value is a price level (its chart marker sits at it) or something else (a %
  // or amount move, an indicator, a day change), whose marker sits at the bar's close instead.
  function isPriceLevel(series, op) {
    const o = op || "";
    return (vocabulary.price_levels || []).includes(series || "") && !(vocabulary.move_ops || []).includes(o)
      && !o.startsWith("moving_");
  }

  // Where an alert's chart marker sits: a price level at its value; anything else at the price where it
  // fired, from the alert's evidence: the tick's price for a series ticks update (price, day change), the
  // bar's close for one bars or forecasts update. Without evidence (an alert stored before it was kept),
  // the close of the bar it fired in: a tick's alert falls inside [start, end), a bar's at the bar's end.
  function markerPrice(a, bars) {
    if (a.value != null && isPriceLevel(a.series, a.op)) return Number(a.value);
    const e = a.evidence || {}, tick = (vocabulary.tick_series || ["price"]).includes(a.series || "");
    const own = tick ? e.price : e.close, other = tick ? e.close : e.price;
    if (own != null) return own;
    if (other != null) return other;
    let best = null;
    for (const b of bars || []) { if (tick ? b.start_ms <= a.ts_ms : b.start_ms < a.ts_ms) best = b.close; else break; }
    return best != null ? best : (bars && bars.length ? bars[bars.length - 1].close : null);
  }

  const fmt = {
    unitOf, seriesValue, useVocabulary, isPriceLevel, markerPrice,
    alertValue: (a) => seriesValue(a.value, a.series, a.op),
    alertLevel: (a) => seriesValue(a.threshold, a.series, a.op),
    price: (v) => v == null ? "—" : Number(v).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: v < 1 ? 6 : 2 }),
    num: (v, d = 2) => v == null ? "—" : Number(v).toLocaleString(undefined, { maximumFractionDigits: d }),
    pct: (v) => v == null ? "—" : (v > 0 ? "+" : "") + Number(v).toFixed(2) + " %",
    int: (v) => v == null ? "—" : Math.round(v).toLocaleString(),
    time: (ms) => ms == null ? "—" : new Date(ms).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    iso: (s) => s ? new Date(s).toLocaleString() : "—",
    cls: (v) => v == null ? "" : (v >= 0 ? "up" : "down"),
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else if (v != null) node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c.nodeType ? c : document.createTextNode(String(c)));
    return node;
  }

  function showErrors(form, err) {
    form.querySelectorAll(".field").forEach((f) => f.classList.remove("invalid"));
    form.querySelectorAll(".field .error").forEach((e) => e.remove());
    const box = form.querySelector(".form-error");
    if (box) box.textContent = "";
    if (!err) return;
    const fields = (err.data && err.data.fields) || {};
    let placed = 0;
    for (const [name, message] of Object.entries(fields)) {
      const input = form.querySelector(`[data-field="${name}"]`) || form.querySelector(`[name="${name}"]`);
      const field = input && input.closest(".field");
      if (field) { field.classList.add("invalid"); field.append(el("div", { class: "error", text: message })); placed++; }
    }
    if (box) box.textContent = placed ? "Please correct the highlighted fields." : err.message;
  }

  let socket = null;
  const handlers = { update: [], alert: [] };
  function live() {
    if (socket || typeof io === "undefined") return socket;
    socket = io();  // long-polling first, upgraded to WebSocket
    const dot = document.getElementById("live-dot");
    const joined = new Set();
    socket.on("connect", () => { if (dot) dot.classList.add("on"); joined.forEach((s) => socket.emit("join", { symbol: s })); });
    socket.on("disconnect", () => dot && dot.classList.remove("on"));
    socket.on("update", (u) => handlers.update.forEach((h) => h(u)));
    socket.on("alert", (a) => { toast(a); handlers.alert.forEach((h) => h(a)); });
    socket.joinSymbol = (s) => { joined.add(s); if (socket.connected) socket.emit("join", { symbol: s }); };
    return socket;
  }
  function on(event, fn) { handlers[event].push(fn); live(); }

  function toast(a) {
    const stack = document.querySelector(".toast-stack") || document.body.appendChild(el("div", { class: "toast-stack" }));
    const t = el("div", { class: "toast " + a.state },
      el("b", { text: `${a.state === "resolved" ? "Resolved" : "Alert"} · ${a.symbol}` }),
      el("div", { text: a.message || `${a.rule_name || "Rule #" + a.rule_id}: ${a.series} ${a.op.replaceAll("_", " ")} ${fmt.alertLevel(a)}` }));
    stack.append(t);
    setTimeout(() => t.remove(), 8000);
  }

  function rangeQuery(form) {
    const q = new URLSearchParams();
    new FormData(form).forEach((v, k) => { if (v !== "") q.append(k, v); });
    return q.toString();
  }

  if (typeof module === "object" && module.exports) { module.exports = { fmt }; return; }  // node: the formatters
  window.TB = { api, fmt, el, showErrors, live, on, toast, rangeQuery };
  document.addEventListener("DOMContentLoaded", () => { if (document.body.dataset.user) live(); });
})();

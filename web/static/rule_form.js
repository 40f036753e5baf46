/* Rule form: presets, fields shown per operator, explanations, preview with markers, server-side errors per field.
   Every series, operator, group and label comes from the server's catalog (the vocabulary, events/vocabulary.py). */
(function () {
  "use strict";
  const { api, fmt, el, showErrors } = TB;
  const { rule, catalog } = JSON.parse(document.getElementById("rule-data").textContent);
  const form = document.getElementById("rule-form");
  const $ = (id) => document.getElementById(id);
  const group = (op) => Object.keys(catalog.groups).find((g) => catalog.groups[g].includes(op));
  const UNIT_S = { s: 1, m: 60, h: 3600 };

  function sync() {
    const op = $("op").value, g = group(op), against = form.against.value;
    $("compare-fields").classList.toggle("hidden", g !== "compare");
    $("value-field").classList.toggle("hidden", g === "channel" || (g === "compare" && against === "other"));
    $("other-field").classList.toggle("hidden", !(g === "compare" && against === "other"));
    $("lower-field").classList.toggle("hidden", g !== "channel");
    $("upper-field").classList.toggle("hidden", g !== "channel");
    $("window-field").classList.toggle("hidden", g !== "move");
    $("value-label").textContent = g === "move" ? (catalog.operator_info[op].percent ? "Move (%)" : "Move (amount)") : "Level";
    $("value-help").textContent = g === "move" ? "Size of the move; the direction is in the operator." : "The price or indicator value that matters.";
    $("also-fields").classList.toggle("hidden", !$("also-on").checked);
    const watchList = form.target.value === "watchlist";
    $("symbol-field").classList.toggle("hidden", watchList);
    $("watchlist-field").classList.toggle("hidden", !watchList);
    $("explain").textContent = `${$("series").value}: ${catalog.series[$("series").value]}. Fires when it ${catalog.operators[op]}.`;
  }

  function fill(r) {
    const c = r.condition || {};
    if (r.name != null) form.name.value = r.name;
    if (r.watchlist_id) { form.target.value = "watchlist"; $("watchlist_id").value = r.watchlist_id; }
    else if (r.symbol) { form.target.value = "symbol"; $("symbol").value = r.symbol; }
    fillCondition(c);
    if (r.frequency) $("frequency").value = r.frequency;
    ["cooldown_s", "pending_s"].forEach((k) => { if (r[k] != null) $(k).value = r[k]; });
    $("recovery").value = r.recovery ?? "";
    if (r.expires_ms) { const d = new Date(r.expires_ms); $("expires").value = new Date(d - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16); }
    const hm = (m) => m == null ? "" : `${String(Math.floor(m / 60) % 24).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
    $("active_from").value = hm(r.active_from_min); $("active_to").value = hm(r.active_to_min);
    if (r.timezone) $("timezone").value = r.timezone;
    form.querySelectorAll('input[name="channel_ids"]').forEach((cb) => cb.checked = (r.channel_ids || []).includes(Number(cb.value)));
    $("message").value = r.message || "";
    $("enabled").checked = r.enabled !== false;
    $("notify_on_resolve").checked = !!r.notify_on_resolve;
    const rep = r.repeat_interval_s, unit = rep == null ? 3600 : [86400, 3600, 60].find((u) => rep % u === 0) || 60;
    $("repeat-unit").value = String(unit); $("repeat_every").value = rep == null ? "" : rep / unit;
  }
  function fillCondition(c) {
    if (c.series) $("series").value = c.series;
    if (c.op) $("op").value = c.op;
    form.against.value = c.other ? "other" : "value";
    $("value").value = c.value ?? ""; if (c.other) $("other").value = c.other;
    $("lower").value = c.lower ?? ""; $("upper").value = c.upper ?? "";
    if (c.window_bars) { $("window").value = c.window_bars; $("window-unit").value = "bars"; }
    else if (c.window_s) { const u = c.window_s % 3600 === 0 ? "h" : c.window_s % 60 === 0 ? "m" : "s"; $("window").value = c.window_s / UNIT_S[u]; $("window-unit").value = u; }
    $("also-on").checked = !!c.also;
    if (c.also) { $("also-series").value = c.also.series; $("also-op").value = c.also.op; $("also-value").value = c.also.value ?? ""; }
    $("match").value = c.match || "all";
    $("more-rows").innerHTML = "";
    (c.more || []).forEach(addRow);
    sync();
  }

  // further conditions (condition.more): one row each, its fields shown per operator group
  const options = (names, label) => names.map((k) => el("option", { value: k, text: label ? label(k) : k }));
  function addRow(c) {
    c = c || { series: "rsi_14", op: "less_than", value: 30 };
    const i = $("more-rows").children.length;
    if (i >= catalog.max_conditions - 1) return;
    const f = (name, node) => { node.dataset.part = name; node.dataset.field = `condition.more.${i}.${name}`; return node; };
    const series = f("series", el("select", {}, ...options(Object.keys(catalog.series))));
    const op = f("op", el("select", {}, ...options(Object.keys(catalog.operators), (k) => catalog.operator_info[k].label)));
    const other = f("other", el("select", {}, el("option", { value: "", text: "a level" }), ...options(Object.keys(catalog.series))));
    const num = (name, ph) => f(name, el("input", { type: "number", step: "any", placeholder: ph }));
    const value = num("value", "level / move"), lower = num("lower", "lower"), upper = num("upper", "upper"), win = num("window_s", "within (s)");
    const remove = el("button", { type: "button", class: "btn small", text: "Remove" });
    const row = el("div", { class: "inline-fields more-row" }, ...[series, op, other, value, lower, upper, win].map((n) => el("div", { class: "field" }, n)), remove);
    series.value = c.series; op.value = c.op; other.value = c.other || "";
    value.value = c.value ?? ""; lower.value = c.lower ?? ""; upper.value = c.upper ?? ""; win.value = c.window_s ?? "";
    const show = () => {
      const g = group(op.value);
      other.parentNode.classList.toggle("hidden", g !== "compare");
      value.parentNode.classList.toggle("hidden", g === "channel" || (g === "compare" && other.value !== ""));
      lower.parentNode.classList.toggle("hidden", g !== "channel"); upper.parentNode.classList.toggle("hidden", g !== "channel");
      win.parentNode.classList.toggle("hidden", g !== "move");
    };
    row.addEventListener("change", show);
    remove.addEventListener("click", () => { row.remove(); renumber(); });
    $("more-rows").append(row); show();
  }
  function renumber() {
    [...$("more-rows").children].forEach((row, i) => row.querySelectorAll("[data-part]").forEach((n) => { n.dataset.field = `condition.more.${i}.${n.dataset.part}`; }));
  }
  function moreConditions() {
    return [...$("more-rows").children].map((row) => {
      const v = (name) => row.querySelector(`[data-part="${name}"]`).value;
      const c = { series: v("series"), op: v("op") }, g = group(c.op);
      if (g === "compare") { if (v("other")) c.other = v("other"); else c.value = num(v("value")); }
      if (g === "channel") { c.lower = num(v("lower")); c.upper = num(v("upper")); }
      if (g === "move") { c.value = num(v("value")); c.window_s = num(v("window_s")); }
      return c;
    });
  }

  const num = (v) => v === "" || v == null ? null : Number(v);
  const minutes = (t) => t ? Number(t.slice(0, 2)) * 60 + Number(t.slice(3, 5)) : null;
  function payload() {
    const op = $("op").value, g = group(op);
    const c = { series: $("series").value, op };
    if (g === "compare") { if (form.against.value === "other") c.other = $("other").value; else c.value = num($("value").value); }
    if (g === "channel") { c.lower = num($("lower").value); c.upper = num($("upper").value); }
    if (g === "move") {
      c.value = num($("value").value);
      const unit = $("window-unit").value, w = num($("window").value);
      if (unit === "bars") c.window_bars = w; else c.window_s = w == null ? null : Math.round(w * UNIT_S[unit]);
    }
    if ($("also-on").checked) c.also = { series: $("also-series").value, op: $("also-op").value, value: num($("also-value").value) };
    const more = moreConditions();
    if (more.length) { c.more = more; c.match = $("match").value; }
    const every = num($("repeat_every").value);
    const watchList = form.target.value === "watchlist";
    return {
      name: form.name.value.trim(), symbol: watchList ? null : $("symbol").value.trim().toUpperCase() || null,
      watchlist_id: watchList ? Number($("watchlist_id").value) || null : null, condition: c,
      frequency: $("frequency").value, cooldown_s: num($("cooldown_s").value) ?? 0, pending_s: num($("pending_s").value) ?? 0,
      recovery: num($("recovery").value), expires_ms: $("expires").value ? new Date($("expires").value).getTime() : null,
      active_from_min: minutes($("active_from").value), active_to_min: minutes($("active_to").value),
      timezone: $("timezone").value.trim(), message: $("message").value, enabled: $("enabled").checked,
      notify_on_resolve: $("notify_on_resolve").checked,
      repeat_interval_s: every == null ? null : Math.round(every * Number($("repeat-unit").value)),
      channel_ids: [...form.querySelectorAll('input[name="channel_ids"]:checked')].map((cb) => Number(cb.value)),
    };
  }

  form.addEventListener("change", sync);
  $("add-condition").addEventListener("click", () => addRow());
  $("preset").addEventListener("change", () => {
    const p = catalog.presets.find((x) => x.key === $("preset").value);
    if (p) { fillCondition(p.condition); if (!form.name.value) form.name.value = `${($("symbol").value || "").toUpperCase()} ${p.label}`.trim(); }
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showErrors(form, null);
    $("save").disabled = true;
    try {
      const saved = rule ? await api("PUT", `/api/rules/${rule.id}`, payload()) : await api("POST", "/api/rules", payload());
      location.href = `/rules/${saved.id}?saved=1`;
    } catch (err) { showErrors(form, err); $("save").disabled = false; }
  });

  async function preview() {
    showErrors(form, null);
    const body = payload();
    if (rule) body.id = rule.id;
    $("preview-label").textContent = "Evaluating the stored history…";
    try {
      const res = await api("POST", "/api/rules/preview", body);
      $("preview-count").textContent = res.count;
      $("preview-label").textContent = `time${res.count === 1 ? "" : "s"} in the last ${res.days} days on ${res.symbols.join(", ")}`;
      await drawPreview(res.symbols[0], res.alerts, body.condition);
    } catch (err) {
      $("preview-count").textContent = "–";
      $("preview-label").textContent = err.status === 422 ? "Fix the highlighted fields to preview." : err.message;
      if (err.status === 422) showErrors(form, err);
    }
  }
  async function drawPreview(symbol, alerts, cond) {
    if (!symbol) return;
    const bars = await api("GET", `/api/symbols/${encodeURIComponent(symbol)}/bars?from=${Date.now() - 30 * 86400e3}&limit=5000`);
    const fired = alerts.filter((a) => (a.state || "firing") === "firing" && (!a.symbol || a.symbol === symbol));
    const traces = [
      { type: "scatter", mode: "lines", name: symbol, x: bars.map((b) => new Date(b.start_ms)), y: bars.map((b) => b.close), line: { color: "#3056d3", width: 1.5 } },
      { type: "scatter", mode: "markers", name: "Would have fired", x: fired.map((a) => new Date(a.ts_ms)),
        // where it fired: the condition that matched (a rule of several names it) and its evidence
        y: fired.map((a) => TB.fmt.markerPrice({ series: cond.series, op: cond.op, ...a }, bars)),
        text: fired.map((a) => fmt.seriesValue(a.value, a.series || cond.series, a.op || cond.op)), hovertemplate: "%{text}<extra>would have fired</extra>",
        marker: { symbol: "triangle-down", size: 11, color: "#f59e0b", line: { color: "#7c4a03", width: 1 } } },
    ];
    const shapes = cond.value != null && TB.fmt.isPriceLevel(cond.series, cond.op) ? [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: cond.value, y1: cond.value, line: { color: "#8b5cf6", dash: "dot" } }] : [];
    $("preview-chart").classList.remove("hidden");
    Plotly.react("preview-chart", traces, { margin: { l: 50, r: 10, t: 10, b: 30 }, showlegend: false, shapes, xaxis: { type: "date" }, font: { size: 11 } }, { displaylogo: false, responsive: true });
  }
  $("preview-btn").addEventListener("click", preview);

  if (rule) {
    fill(rule);
    api("GET", `/api/rules/${rule.id}/alerts`).then((list) => {
      const body = $("rule-alerts"); body.innerHTML = "";
      if (!list.length) body.append(el("tr", {}, el("td", { class: "empty", text: "This rule has not fired yet." })));
      list.slice(0, 20).forEach((a) => body.append(el("tr", {},
        el("td", { class: "small", text: fmt.time(a.ts_ms) }), el("td", {}, el("a", { href: `/alerts/${encodeURIComponent(a.id)}`, text: a.symbol })),
        el("td", {}, el("span", { class: "badge " + a.state, text: a.state })), el("td", { class: "num", text: fmt.alertValue(a) }))));
    });
    if (new URLSearchParams(location.search).get("saved")) form.prepend(el("div", { class: "flash ok", text: "Saved. The engine has been told about the change." }));
    setTimeout(preview, 0);  // an existing rule: show its history straight away
  } else {
    fill({ symbol: form.dataset.presetSymbol, condition: catalog.presets[0].condition, frequency: "once_per_bar" });
  }
  sync();
})();

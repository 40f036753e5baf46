/* Symbol page: history from the projections, then live updates over Socket.IO without reloading. */
(function () {
  "use strict";
  const { api, fmt, el, on, live } = TB;
  const node = document.getElementById("chart");
  const symbol = node.dataset.symbol;
  const state = { symbol, bars: [], predictions: [], alerts: [], price: null, board: null, levels: JSON.parse(node.dataset.levels || "[]") };
  const form = document.getElementById("range");
  let frame = null, query = "";
  const schedule = () => { if (!frame) frame = requestAnimationFrame(() => { frame = null; TBChart.render(node, state); }); };

  function header() {
    const last = state.bars[state.bars.length - 1];
    const price = state.price != null ? state.price : last && last.close;
    if (price == null) return;
    document.getElementById("last-price").textContent = fmt.price(price);
    const first = state.bars[0];
    const change = first ? (price / first.open - 1) * 100 : null;
    const ch = document.getElementById("last-change");
    ch.textContent = fmt.pct(change) + " in range"; ch.className = fmt.cls(change);
  }

  function alertRow(a) {
    return el("tr", { "data-alert": a.id }, el("td", { class: "small", text: fmt.time(a.ts_ms) }),
      el("td", {}, el("a", { href: `/alerts/${encodeURIComponent(a.id)}`, text: a.rule_name || `Rule #${a.rule_id}` })),
      el("td", {}, el("span", { class: "badge " + a.state, text: a.state })),
      el("td", { class: "num", text: fmt.alertValue(a) }), el("td", { class: "num", text: fmt.alertLevel(a) }));
  }
  function alertTable() {
    const body = document.getElementById("symbol-alerts");
    body.innerHTML = "";
    if (!state.alerts.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No alerts in this range." })));
    [...state.alerts].sort((a, b) => b.ts_ms - a.ts_ms).slice(0, 50).forEach((a) => body.append(alertRow(a)));
  }

  // The forecast is shown with its model's honest record (forecast.js says how).
  function forecastNote() {
    document.getElementById("forecast-note").textContent =
      TBForecast.note(state.predictions[state.predictions.length - 1], fmt.time, state.board);
  }

  // The live scoreboard: every served forecast held against its bar, per model (forecast.js words it)
  function scoreboard() {
    const box = document.getElementById("scoreboard"), body = document.getElementById("scoreboard-rows");
    const models = (state.board && state.board.models) || [];
    box.hidden = !models.length;
    body.innerHTML = "";
    models.forEach((m) => body.append(el("tr", { "data-model": m.model_version, "data-verdict": (m.live || {}).verdict || "" },
      ...TBForecast.scoreboardCells(m).map((text, i) => el("td", { class: i && i < 5 ? "num" : "", text })))));
  }
  async function loadScoreboard() {
    try { state.board = await api("GET", `/api/symbols/${encodeURIComponent(symbol)}/scoreboard`); }
    catch (e) { state.board = null; }
    scoreboard(); forecastNote();
  }

  async function load() {
    const q = query || `from=${Date.now() - 24 * 3600e3}`;
    const [bars, preds, alerts] = await Promise.all([
      api("GET", `/api/symbols/${encodeURIComponent(symbol)}/bars?limit=2000&${q}`),
      api("GET", `/api/symbols/${encodeURIComponent(symbol)}/predictions?limit=2000&${q}`),
      api("GET", `/api/alerts?symbol=${encodeURIComponent(symbol)}&limit=500&${q}`)]);
    Object.assign(state, { bars, predictions: preds, alerts });
    header(); alertTable(); forecastNote(); TBChart.render(node, state); loadScoreboard();
    if (bars.length) document.getElementById("last-updated").textContent = "last bar " + fmt.time(bars[bars.length - 1].ts || bars[bars.length - 1].start_ms);
  }

  document.querySelectorAll("#quick-range button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll("#quick-range button").forEach((x) => x.classList.toggle("active", x === b));
    query = `from=${Date.now() - Number(b.dataset.hours) * 3600e3}`; form.from.value = ""; form.to.value = ""; load();
  }));
  form.addEventListener("submit", (e) => { e.preventDefault(); query = TB.rangeQuery(form); document.querySelectorAll("#quick-range button").forEach((x) => x.classList.remove("active")); load(); });

  const sock = live();
  if (sock) sock.joinSymbol(symbol);
  on("update", (u) => {
    if (u.symbol !== symbol) return;
    if (u.history_ms && !(state.bars.length && state.bars[0].start_ms <= u.history_ms)) {
      // a backfill landed: the bars come from the projection, which commits a moment after the bridge
      clearTimeout(state.reload); state.reload = setTimeout(load, 1000);
    }
    (u.bars || []).forEach((b) => TBChart.upsertBar(state.bars, b));
    if (u.prediction) { TBChart.upsertPrediction(state.predictions, u.prediction); forecastNote(); }
    if (u.bars && u.bars.length) {  // a closed bar settles the forecast of it: the projection scores it a moment later
      clearTimeout(state.rescore); state.rescore = setTimeout(loadScoreboard, 1500);
    }
    if (u.price != null) state.price = u.price;
    const feedNote = document.getElementById("feed-note"); if (feedNote) feedNote.remove();  // data flows again
    node.dataset.updates = String(Number(node.dataset.updates) + 1);
    document.getElementById("last-updated").textContent = "live · " + new Date(u.ts_ms || Date.now()).toLocaleTimeString();
    header(); schedule();
  });
  on("alert", (a) => {
    if (a.symbol !== symbol || state.alerts.some((x) => x.id === a.id)) return;
    state.alerts.push(a); alertTable(); schedule();
  });
  load();
})();

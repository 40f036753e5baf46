/* The symbol chart: candlesticks, SMA overlays, volume beneath, forecast with its interval, alert markers. */
(function () {
  "use strict";
  const COLORS = { up: "#12a150", down: "#d9363e", sma5: "#f59e0b", sma20: "#6366f1", fc: "#0ea5e9", grid: "#eef1f6" };

  function traces(state) {
    const bars = state.bars, x = bars.map((b) => new Date(b.start_ms));
    const out = [
      { type: "candlestick", name: state.symbol, x, open: bars.map((b) => b.open), high: bars.map((b) => b.high),
        low: bars.map((b) => b.low), close: bars.map((b) => b.close), xaxis: "x", yaxis: "y",
        increasing: { line: { color: COLORS.up }, fillcolor: COLORS.up }, decreasing: { line: { color: COLORS.down }, fillcolor: COLORS.down } },
      { type: "scatter", mode: "lines", name: "SMA 5", x, y: bars.map((b) => b.sma_5), line: { color: COLORS.sma5, width: 1.6 }, connectgaps: false },
      { type: "scatter", mode: "lines", name: "SMA 20", x, y: bars.map((b) => b.sma_20), line: { color: COLORS.sma20, width: 1.6 } },
      { type: "bar", name: "Volume", x, y: bars.map((b) => b.volume), yaxis: "y2", showlegend: false,
        marker: { color: bars.map((b) => b.close >= b.open ? "rgba(18,161,80,.45)" : "rgba(217,54,62,.45)") } },
    ];
    const preds = state.predictions;
    if (preds.length) {
      // the band opens from the first forecast's base close (at its base bar's end), so that even one
      // forecast, the first on a symbol with history, shows as a band and not as a lone marker
      const p0 = preds[0], x0 = new Date(p0.target_ms - p0.horizon_bars * p0.bar_seconds * 1000);
      const px = [x0, ...preds.map((p) => new Date(p.target_ms))], at0 = (f) => [p0.base_close, ...preds.map(f)];
      out.push({ type: "scatter", mode: "lines", name: "Interval", x: px, y: at0((p) => p.upper), line: { width: 0 }, hoverinfo: "skip", showlegend: false });
      out.push({ type: "scatter", mode: "lines", name: `Forecast interval (${Math.round(preds[preds.length - 1].interval_level * 100)} %)`, x: px, y: at0((p) => p.lower),
        fill: "tonexty", fillcolor: "rgba(14,165,233,.15)", line: { width: 0 } });
      out.push({ type: "scatter", mode: "lines+markers", name: "Forecast", x: px, y: at0((p) => p.predicted_close),
        line: { color: COLORS.fc, dash: "dot", width: 1.8 }, marker: { size: px.map((_, i) => (i ? 4 : 0)) } });
    }
    const fired = state.alerts.filter((a) => a.state === "firing"), resolved = state.alerts.filter((a) => a.state !== "firing");
    // a price-level alert sits at its value; any other (a % or amount move, an indicator, a day change) at
    // the price where it fired (its evidence), since its value is no price and would squash the candles
    // against zero; which is which is the vocabulary's (TB.fmt.markerPrice in app.js)
    const F = window.TB && TB.fmt;
    const markerY = (a) => F ? F.markerPrice(a, bars) : nearestClose(bars, a.ts_ms);
    const shown = (a) => `${a.rule_name || `Rule #${a.rule_id}`}<br>${F ? F.alertValue(a) : a.value}`;
    out.push({ type: "scatter", mode: "markers", name: "Alert fired", x: fired.map((a) => new Date(a.ts_ms)), y: fired.map(markerY),
      marker: { symbol: "triangle-down", size: 13, color: "#f59e0b", line: { color: "#7c4a03", width: 1 } },
      text: fired.map(shown), hovertemplate: "%{text}<extra>alert</extra>" });
    if (resolved.length) out.push({ type: "scatter", mode: "markers", name: "Resolved", x: resolved.map((a) => new Date(a.ts_ms)), y: resolved.map(markerY),
      marker: { symbol: "circle-open", size: 10, color: "#12a150" }, text: resolved.map((a) => a.rule_name), hovertemplate: "%{text}<extra>resolved</extra>" });
    if (state.preview && state.preview.length) out.push({ type: "scatter", mode: "markers", name: "Would have fired", x: state.preview.map((a) => new Date(a.ts_ms)),
      y: state.preview.map(markerY), marker: { symbol: "star", size: 12, color: "#8b5cf6" },
      text: state.preview.map((a) => F ? F.alertValue(a) : String(a.value)), hovertemplate: "%{text}<extra>would have fired</extra>" });
    return out;
  }

  function nearestClose(bars, ts) {
    let best = null;
    for (const b of bars) { if (b.start_ms <= ts) best = b.close; else break; }
    return best != null ? best : (bars.length ? bars[bars.length - 1].close : null);
  }

  function layout(state) {
    const shapes = [];
    if (state.price != null) shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: state.price, y1: state.price,
      line: { color: "#64748b", width: 1, dash: "dash" } });
    (state.levels || []).forEach((lv) => shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: lv, y1: lv, line: { color: "#8b5cf6", width: 1.2, dash: "dot" } }));
    return {
      margin: { l: 56, r: 18, t: 14, b: 36 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff", font: { family: "Inter, Segoe UI, sans-serif", size: 12, color: "#1b2330" },
      showlegend: true, legend: { orientation: "h", x: 0, y: 1.06, font: { size: 11 } }, hovermode: "x unified", uirevision: state.symbol,
      xaxis: { rangeslider: { visible: false }, gridcolor: COLORS.grid, type: "date", anchor: "y2" },
      yaxis: { domain: [0.27, 1], gridcolor: COLORS.grid, tickformat: ",.2f", title: { text: "Price", standoff: 6 } },
      yaxis2: { domain: [0, 0.2], gridcolor: COLORS.grid, title: { text: "Volume", standoff: 6 }, tickformat: "~s" },
      shapes,
    };
  }

  function render(node, state) {
    Plotly.react(node, traces(state), layout(state), { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] });
    node.dataset.bars = String(state.bars.length);
    node.dataset.alerts = String(state.alerts.length);
  }

  function upsertBar(bars, bar) {
    for (let i = bars.length - 1; i >= 0 && i >= bars.length - 5; i--) if (bars[i].start_ms === bar.start_ms) { bars[i] = bar; return; }
    bars.push(bar); bars.sort((a, b) => a.start_ms - b.start_ms);
  }
  function upsertPrediction(preds, p) {
    const i = preds.findIndex((q) => q.id === p.id);
    if (i >= 0) preds[i] = p; else { preds.push(p); preds.sort((a, b) => a.base_start_ms - b.base_start_ms); }
  }

  window.TBChart = { render, traces, upsertBar, upsertPrediction };
})();

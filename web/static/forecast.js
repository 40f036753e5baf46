/* The forecast note on the symbol page: a pure function of one prediction (tested with node in
   tests/predict/test_forecast_note.py). The model's honest record: its skill against "no change" on
   held-out data, and what it was trained and evaluated on. "Better" needs a positive skill that chance
   explains poorly (Diebold-Mariano p < 0.05) on enough samples (MIN_N, as predict/scoreboard.py): a
   positive skill alone on a few hundred bars is often noise. The live scoreboard (GET
   /api/symbols/<s>/scoreboard) holds the served forecasts against the bars they forecast; either record
   can back the claim, and a live record that is significantly worse is said plainly. */
(function (root) {
  "use strict";
  const barSize = (s) => s % 86400 === 0 ? `${s / 86400}-day` : s % 3600 === 0 ? `${s / 3600}-hour`
    : s % 60 === 0 ? `${s / 60}-minute` : `${s}-second`;

  const MIN_N = 100, ALPHA = 0.05;
  const signed = (x, d = 3) => `${x >= 0 ? "+" : ""}${x.toFixed(d)}`;
  const pText = (p) => p == null ? "" : p < 0.001 ? "p < 0.001" : `p = ${p.toFixed(3)}`;
  const COVERAGE_MARGIN = 0.1;  // an interval that holds this much more or less often than it claims is flagged
  const pctText = (x) => x == null ? "—" : `${Math.round(x * 100)} %`;
  /** Positive skill at p < ALPHA on at least MIN_N samples: the only case "better" may be said. */
  const significant = (skill, p, n) => skill != null && p != null && skill > 0 && p < ALPHA && n != null && n >= MIN_N;

  function verdict(p) {
    if (p.skill == null) return "its skill is unknown";
    const pv = p.skill_p != null ? `, ${pText(p.skill_p)}` : "";
    const nv = p.holdout_n != null ? ` over ${p.holdout_n} bars` : "";
    const head = `holdout skill against a no-change forecast ${signed(p.skill)}${pv}${nv}: `;
    if (significant(p.skill, p.skill_p, p.holdout_n)) return head + "better than no change on the data it was evaluated on";
    if (p.skill > 0 && p.skill_p != null && p.skill_p < ALPHA) return head + `not shown to be better than assuming no change (fewer than ${MIN_N} bars back it), so read the band as a range, not a signal`;
    if (p.skill > 0) return head + "not shown to be better than assuming no change (too likely chance), so read the band as a range, not a signal";
    return head + "not better than assuming no change, so read the band as a range, not a signal";
  }

  /** One sentence on the live record of a model (a scoreboard entry's ``live``), or "". */
  function liveVerdict(live) {
    if (!live || !live.n) return " Live: no served forecast of this model has been scored yet.";
    const head = ` Live, over the last ${live.n} scored forecasts: skill ${live.skill == null ? "unknown" : signed(live.skill)}` +
      (live.dm_p != null ? `, ${pText(live.dm_p)}` : "") +
      (live.coverage != null ? `; the interval held ${pctText(live.coverage)} of the time (it claims ${pctText(live.nominal_coverage)})` : "");
    if (live.n < MIN_N) return head + ` — too few to tell (${MIN_N} needed).`;
    if (significant(live.skill, live.dm_p, live.n)) return head + " — better than no change on live data.";
    if (live.skill != null && live.skill < 0 && live.dm_p != null && live.dm_p < ALPHA) return head + " — worse than assuming no change.";
    return head + " — not shown to be better than assuming no change.";
  }

  /** The cells of one scoreboard row: model, scored n, live skill (p), coverage (nominal), direction, verdict. */
  function scoreboardCells(m) {
    const live = m.live || {}, d = live.direction || {};
    const verdicts = { better: "better than no change", worse: "worse than no change",
      no_difference: "not shown better than no change", too_few: `too few scored (${MIN_N} needed)` };
    let band = "";
    if (live.coverage != null && live.nominal_coverage != null && live.n >= MIN_N) {
      if (live.coverage < live.nominal_coverage - COVERAGE_MARGIN) band = "; its interval is too narrow";
      else if (live.coverage > live.nominal_coverage + COVERAGE_MARGIN) band = "; its interval is too wide";
    }
    return [m.model_version, String(live.n || 0),
      live.skill == null ? "—" : `${signed(live.skill)}${live.dm_p != null ? ` (${pText(live.dm_p)})` : ""}`,
      live.coverage == null ? "—" : `${pctText(live.coverage)} (${pctText(live.nominal_coverage)})`,
      d.accuracy == null ? "—" : `${pctText(d.accuracy)} · up ${pctText(d.always_up)} · last ${pctText(d.last_move)}`,
      (verdicts[live.verdict] || "—") + band];
  }

  function trainedOn(p, time) {
    if (!p.trained_bar_seconds) return "";
    let text = ` Trained on ${barSize(p.trained_bar_seconds)} bars${p.data_source ? ` of ${p.data_source}` : ""}`;
    if (p.trained_from_ms != null && p.trained_to_ms != null) text += ` from ${time(p.trained_from_ms)} to ${time(p.trained_to_ms)}`;
    if (p.holdout_from_ms != null && p.holdout_to_ms != null) {
      text += `; evaluated on ${p.holdout_n != null ? p.holdout_n + " " : ""}held-out bars from ` +
        `${time(p.holdout_from_ms)} to ${time(p.holdout_to_ms)}`;
    }
    if (p.bar_seconds && p.trained_bar_seconds !== p.bar_seconds) text += ` (not the ${barSize(p.bar_seconds)} bars shown here)`;
    return text + ".";
  }

  // What a model was trained on, by version, from the predictions that said so: the live ones (over
  // Socket.IO) carry it, the projection's (the REST history a reload reads) do not store it yet
  const PROVENANCE = ["trained_bar_seconds", "data_source", "trained_from_ms", "trained_to_ms", "holdout_from_ms",
    "holdout_to_ms", "holdout_n", "skill_p"];
  const known = {};

  /** The note for the latest prediction ``p`` (or none); ``time`` formats epoch ms; ``board`` the
      scoreboard (its entry for ``p``'s model adds the live record). */
  function note(p, time, board) {
    if (!p) return "No forecast yet: the model needs about 40 bars of this symbol (backfilled history counts), then forecasts each new bar.";
    if (p.trained_bar_seconds) known[p.model_version] = Object.fromEntries(PROVENANCE.map((k) => [k, p[k]]));
    else if (known[p.model_version]) p = { ...p, ...known[p.model_version] };
    const pct = Math.round((p.interval_level || 0.8) * 100);
    const entry = board && (board.models || []).find((m) => m.model_version === p.model_version);
    return `Forecast by model ${p.model_version}: next close ${p.predicted_close.toFixed(2)}, ` +
      `${pct} % interval ${p.lower.toFixed(2)} to ${p.upper.toFixed(2)}; ${verdict(p)}.` + trainedOn(p, time) +
      (entry ? liveVerdict(entry.live) : "");
  }

  const api = { note, verdict, liveVerdict, scoreboardCells, significant, barSize, MIN_N };
  if (typeof module === "object" && module.exports) module.exports = api; else root.TBForecast = api;
})(typeof window !== "undefined" ? window : this);

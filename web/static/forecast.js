/* The forecast note on the symbol page: a pure function of one prediction (tested with node in
   tests/predict/test_forecast_note.py). The model's honest record: its skill against "no change" on
   held-out data, and what it was trained and evaluated on. "Better" needs a positive skill that chance
   explains poorly (Diebold-Mariano p < 0.05): a positive skill alone on a few hundred bars is often noise. */
(function (root) {
  "use strict";
  const barSize = (s) => s % 86400 === 0 ? `${s / 86400}-day` : s % 3600 === 0 ? `${s / 3600}-hour`
    : s % 60 === 0 ? `${s / 60}-minute` : `${s}-second`;

  function verdict(p) {
    if (p.skill == null) return "its skill is unknown";
    const pv = p.skill_p != null ? `, p = ${p.skill_p < 0.001 ? "< 0.001" : p.skill_p.toFixed(3)}` : "";
    const head = `holdout skill against a no-change forecast ${p.skill >= 0 ? "+" : ""}${p.skill.toFixed(3)}${pv}: `;
    if (p.skill > 0 && p.skill_p != null && p.skill_p < 0.05) return head + "better than no change on the data it was evaluated on";
    if (p.skill > 0) return head + "not shown to be better than assuming no change (too likely chance), so read the band as a range, not a signal";
    return head + "not better than assuming no change, so read the band as a range, not a signal";
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

  /** The note for the latest prediction ``p`` (or none); ``time`` formats epoch ms. */
  function note(p, time) {
    if (!p) return "No forecast yet: the model needs about 40 bars of this symbol (backfilled history counts), then forecasts each new bar.";
    if (p.trained_bar_seconds) known[p.model_version] = Object.fromEntries(PROVENANCE.map((k) => [k, p[k]]));
    else if (known[p.model_version]) p = { ...p, ...known[p.model_version] };
    const pct = Math.round((p.interval_level || 0.8) * 100);
    return `Forecast by model ${p.model_version}: next close ${p.predicted_close.toFixed(2)}, ` +
      `${pct} % interval ${p.lower.toFixed(2)} to ${p.upper.toFixed(2)}; ${verdict(p)}.` + trainedOn(p, time);
  }

  const api = { note, verdict, barSize };
  if (typeof module === "object" && module.exports) module.exports = api; else root.TBForecast = api;
})(typeof window !== "undefined" ? window : this);

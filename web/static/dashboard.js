/* Dashboard: watchlist table ticking live, add/remove symbols, lists, recent alerts appearing live. */
(function () {
  "use strict";
  const { api, fmt, el, showErrors, on, live } = TB;
  const table = document.getElementById("watchlist-table");
  const wlId = table.dataset.watchlist;
  const rows = new Map([...table.querySelectorAll("tbody tr[data-symbol]")].map((r) => [r.dataset.symbol, r]));

  function setPrice(row, price, ts) {
    const cell = row.querySelector(".price");
    const old = parseFloat(cell.dataset.price);
    cell.dataset.price = price;
    cell.textContent = fmt.price(price);
    if (!isNaN(old) && old !== price) {
      cell.classList.remove("tick-up", "tick-down"); void cell.offsetWidth;
      cell.classList.add(price > old ? "tick-up" : "tick-down");
    }
    let ref = parseFloat(row.dataset.ref);
    if (isNaN(ref)) { ref = price; row.dataset.ref = price; }
    const change = (price / ref - 1) * 100;
    const ch = row.querySelector(".change");
    ch.textContent = fmt.pct(change); ch.className = "num change " + fmt.cls(change);
    const note = row.querySelector(".feed-note"); if (note) note.remove();  // live data answers "waiting"
    const up = row.querySelector(".updated");
    up.dataset.ts = ts || Date.now(); up.textContent = new Date(Number(up.dataset.ts)).toLocaleTimeString();
  }
  rows.forEach((row) => { const ts = row.querySelector(".updated").dataset.ts; if (ts) row.querySelector(".updated").textContent = new Date(Number(ts)).toLocaleTimeString(); });

  const sock = live();
  rows.forEach((_r, s) => sock && sock.joinSymbol(s));
  on("update", (u) => {
    const row = rows.get(u.symbol);
    if (!row) return;
    const last = u.bars && u.bars.length ? u.bars[u.bars.length - 1] : null;
    const price = u.price != null ? u.price : last && last.close;
    if (price != null) setPrice(row, price, u.ts_ms || (last && last.ts));
  });

  const form = document.getElementById("add-symbol");
  if (form) form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", `/api/watchlists/${wlId}/symbols`, { symbol: form.symbol.value });
      location.reload();
    } catch (err) { showErrors(form, err); }
  });
  table.addEventListener("click", async (e) => {
    const btn = e.target.closest("button.remove");
    if (!btn) return;
    try { await api("DELETE", `/api/watchlists/${wlId}/symbols/${encodeURIComponent(btn.dataset.symbol)}`); location.reload(); }
    catch (err) { alert(err.message); }
  });
  document.getElementById("new-list").addEventListener("click", async (e) => {
    e.preventDefault();
    const name = prompt("Name of the new watchlist");
    if (!name) return;
    try { const wl = await api("POST", "/api/watchlists", { name }); location.href = `/dashboard?watchlist=${wl.id}`; }
    catch (err) { alert(err.message); }
  });
  const rename = document.getElementById("rename-list");
  if (rename) rename.addEventListener("click", async (e) => {
    e.preventDefault();
    const name = prompt("New name");
    if (!name) return;
    try { await api("PATCH", `/api/watchlists/${wlId}`, { name }); location.reload(); } catch (err) { alert(err.message); }
  });
  const del = document.getElementById("delete-list");
  if (del) del.addEventListener("click", async (e) => {
    e.preventDefault();
    if (!confirm("Delete this watchlist?")) return;
    try { await api("DELETE", `/api/watchlists/${wlId}`); location.href = "/dashboard"; } catch (err) { alert(err.message); }
  });

  const recent = document.getElementById("recent-alerts");
  function alertRow(a) {
    return el("tr", { "data-alert": a.id },
      el("td", {}, el("span", { class: "badge " + a.state, text: a.state })),
      el("td", {}, el("a", { href: `/alerts/${encodeURIComponent(a.id)}` }, el("b", { text: a.symbol })),
        el("div", { class: "small muted", text: a.rule_name || `Rule #${a.rule_id}` })),
      el("td", { class: "num" }, fmt.alertValue(a), el("div", { class: "small muted", text: fmt.time(a.ts_ms) })));
  }
  api("GET", "/api/alerts?limit=12").then((list) => {
    recent.innerHTML = "";
    if (!list.length) recent.append(el("tr", { class: "empty-row" }, el("td", { class: "empty", text: "No alerts yet. They appear here the moment they fire." })));
    list.forEach((a) => recent.append(alertRow(a)));
  });
  on("alert", (a) => {
    const empty = recent.querySelector(".empty-row"); if (empty) empty.remove();
    recent.prepend(alertRow(a));
  });
})();

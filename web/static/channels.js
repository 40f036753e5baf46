/* Channels: add (webhook secret shown once; email confirmed by mail; Slack bot token and Apprise URL never shown back), queued test send, rotate secret, delivery log. */
(function () {
  "use strict";
  const { api, fmt, el, showErrors } = TB;
  const form = document.getElementById("channel-form");
  const PLACEHOLDER = { email: "you@example.com", slack: "https://hooks.slack.com/services/T000/B000/XXXX", webhook: "https://example.com/hooks/tickerbell",
    slack_bot: "#alerts or C0123ABCD", apprise: "ntfys://ntfy.sh/my-topic" };
  const LABEL = { email: "Email address", slack_bot: "Slack channel", apprise: "Apprise URL" };
  function kindChanged() {
    const k = form.kind.value;
    document.getElementById("kind-help").textContent = form.kind.selectedOptions[0].dataset.help;
    document.getElementById("target-label").textContent = LABEL[k] || "URL";
    form.target.placeholder = PLACEHOLDER[k] || "";
    document.getElementById("token-field").classList.toggle("hidden", k !== "slack_bot");
    document.getElementById("apprise-help").classList.toggle("hidden", k !== "apprise");
  }
  form.kind.addEventListener("change", kindChanged); kindChanged();
  // the supported services and their URL forms, from the one list the server checks against
  api("GET", "/api/channels/kinds").then((info) => {
    const list = document.getElementById("apprise-forms"); list.innerHTML = "";
    Object.entries(info.url_forms).forEach(([service, form_]) => list.append(el("li", {}, el("b", { text: service + ": " }), el("span", { text: form_ }))));
    document.getElementById("apprise-services").textContent = "All supported: " + info.services.join(", ") + ".";
  }).catch(() => {});

  function secretBox(secret, note) {
    return el("div", { class: "secret-box" }, el("div", { class: "small", text: note }), el("code", { class: "mono", text: secret }),
      el("div", {}, el("button", { type: "button", class: "btn small", style: "margin-top:8px", onclick: () => navigator.clipboard && navigator.clipboard.writeText(secret), text: "Copy" })));
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault(); showErrors(form, null);
    try {
      const data = { kind: form.kind.value, name: form.name.value, target: form.target.value };
      if (data.kind === "slack_bot") data.token = form.token.value;
      const ch = await api("POST", "/api/channels", data);
      if (ch.secret) {
        const slot = document.getElementById("new-secret"); slot.innerHTML = "";
        slot.append(secretBox(ch.secret, "Signing secret — shown only now. Store it where your endpoint verifies signatures."),
          el("a", { class: "btn", style: "margin-top:10px", href: "/channels", text: "Done" }));
        form.querySelector("button[type=submit]").disabled = true;
      } else location.reload();
    } catch (err) { showErrors(form, err); }
  });

  document.getElementById("channels-table").addEventListener("click", async (e) => {
    const b = e.target.closest("button.act"); if (!b) return;
    const row = b.closest("tr"), id = row.dataset.channel, result = row.querySelector(".result");
    try {
      if (b.dataset.act === "test") {
        // the worker sends it: poll its delivery until it has an outcome
        b.disabled = true; result.textContent = "Queued…"; result.className = "small result muted";
        const q = await api("POST", `/api/channels/${id}/test`);
        let d = { status: "pending" };
        for (let i = 0; i < 60 && (d.status === "pending" || d.status === "sending"); i++) {
          await new Promise((ok) => setTimeout(ok, 500));
          d = await api("GET", q.poll);
        }
        const ok = d.status === "delivered", code = d.last_status_code ? " (" + d.last_status_code + ")" : "";
        result.textContent = ok ? `✓ Delivered${code}` : d.status === "pending" || d.status === "sending"
          ? "Still queued: see Deliveries later" : `✗ Failed${code}: ${d.last_error || "unknown error"}`;
        result.className = "small result " + (ok ? "up" : "down"); b.disabled = false;
      } else if (b.dataset.act === "confirm") {
        await api("POST", `/api/channels/${id}/confirmation`);
        result.textContent = "Confirmation mail sent again."; result.className = "small result muted";
      } else if (b.dataset.act === "rotate") {
        if (!confirm("Rotate the signing secret? Your endpoint must switch to the new one.")) return;
        const ch = await api("POST", `/api/channels/${id}/rotate-secret`);
        const slot = row.querySelector(".secret-slot"); slot.innerHTML = ""; slot.append(secretBox(ch.secret, "New signing secret — shown only now."));
      } else if (b.dataset.act === "delete") {
        if (!confirm("Delete this channel? Rules using it stop sending to it.")) return;
        await api("DELETE", `/api/channels/${id}`); location.reload();
      } else if (b.dataset.act === "log") {
        const logRow = document.querySelector(`tr[data-log="${id}"]`); logRow.classList.toggle("hidden");
        const body = logRow.querySelector("tbody"); body.innerHTML = "";
        const list = await api("GET", `/api/channels/${id}/deliveries`);
        if (!list.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No deliveries yet." })));
        list.forEach((d) => body.append(el("tr", {}, el("td", {}, el("a", { href: `/alerts/${encodeURIComponent(d.alert_id)}`, class: "mono", text: d.alert_id.slice(0, 18) })),
          el("td", {}, el("span", { class: "badge " + d.status, text: d.status })), el("td", { class: "num", text: d.attempts }),
          el("td", { class: "down", text: d.last_error || "" }), el("td", { text: fmt.iso(d.created_at) }))));
      } else {
        await api("PATCH", `/api/channels/${id}`, { enabled: b.dataset.act === "enable" }); location.reload();
      }
    } catch (err) { result.textContent = err.message; result.className = "small result down"; b.disabled = false; }
  });
})();

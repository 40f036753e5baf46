"""HTML pages: server-rendered shells whose scripts talk to the JSON API and Socket.IO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly
from flask import Blueprint, abort, current_app, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from web.auth import login_required, uid
from web.db import get_db
from web.store import channels as ch_store
from web.store import conditions, history
from web.store import rules as rules_store
from web.store import watchlists as wls

bp = Blueprint("pages", __name__)
WEB = Path(__file__).resolve().parent
VENDOR = {
    "plotly.min.js": Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js",
    "socket.io.min.js": WEB / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js",
}


@bp.app_context_processor
def _vocabulary() -> dict[str, Any]:
    """What every page's value formatting (app.js, TB.fmt) reads: the vocabulary's units."""
    return {"tb_vocabulary": conditions.UNITS_FOR_PAGES}


@bp.get("/vendor/<name>")
def vendor(name: str) -> ResponseReturnValue:
    """Third-party browser code from the installed packages (no CDN: the page works offline)."""
    path = VENDOR.get(name)
    if path is None or not path.exists():
        abort(404)
    return send_file(path, mimetype="text/javascript", max_age=86_400)


@bp.get("/")
def index() -> ResponseReturnValue:
    if not current_user.is_authenticated:
        return redirect(url_for("accounts.login"))
    return redirect(url_for("pages.dashboard"))


@bp.get("/dashboard")
@login_required
def dashboard() -> ResponseReturnValue:
    session = get_db()
    lists = wls.list_watchlists(session, uid())
    selected = request.args.get("watchlist", type=int)
    current = next((w for w in lists if w.id == selected), lists[0] if lists else None)
    symbols = [s.symbol for s in current.symbols] if current else []
    rules = [rules_store.rule_json(session, r) for r in rules_store.list_rules(session, uid())]
    return render_template("dashboard.html", watchlists=lists, current=current, rules=rules[:8],
                           quotes=history.quotes(session, symbols), symbols=symbols)


@bp.get("/symbols/<symbol>")
@login_required
def symbol(symbol: str) -> ResponseReturnValue:
    symbol = wls.normalise_symbol(symbol)
    session = get_db()
    rules = rules_store.list_rules(session, uid(), symbol)
    from web.store.feed import feed_note

    return render_template("symbol.html", symbol=symbol, rules=[rules_store.rule_json(session, r) for r in rules],
                           feed=feed_note(session, symbol), move_ops=list(conditions.MOVE_OPS),
                           price_levels=conditions.UNITS_FOR_PAGES["price_levels"])


@bp.get("/rules")
@login_required
def rules() -> ResponseReturnValue:
    session = get_db()
    return render_template("rules.html", rules=[rules_store.rule_json(session, r) for r in rules_store.list_rules(session, uid())])


@bp.get("/rules/new")
@login_required
def new_rule() -> ResponseReturnValue:
    return _rule_form(None)


@bp.get("/rules/<int:rule_id>")
@login_required
def edit_rule(rule_id: int) -> ResponseReturnValue:
    return _rule_form(rule_id)


def _rule_form(rule_id: int | None) -> ResponseReturnValue:
    session = get_db()
    rule = rules_store.rule_json(session, rules_store.get_rule(session, uid(), rule_id)) if rule_id else None
    return render_template(
        "rule_form.html", rule=rule, preset_symbol=(request.args.get("symbol") or "").upper(),
        watchlists=[wls.watchlist_json(w) for w in wls.list_watchlists(session, uid())],
        channels=[ch_store.channel_json(c) for c in ch_store.list_channels(session, uid())],
        catalog=conditions.catalog(), placeholders=_placeholders(),
    )


def _placeholders() -> list[str]:
    """The names a rule's message template may use: those every alert's context has (the
    template is checked against the same context when the rule is saved)."""
    from alerts.templates import sample_context

    return sorted(sample_context())


@bp.get("/channels")
@login_required
def channels() -> ResponseReturnValue:
    return render_template("channels.html", channels=[ch_store.channel_json(c) for c in ch_store.list_channels(get_db(), uid())],
                           kinds=ch_store.KINDS)


@bp.route("/channels/confirm/<token>", methods=["GET", "POST"])
def confirm_channel(token: str) -> ResponseReturnValue:
    """The link in a confirmation mail. Whoever holds the link may confirm, logged in or not: the
    point is that someone reading that mailbox agrees to receive alerts, and that may be a shared
    inbox whose readers have no Tickerbell account. GET only shows a button: mail scanners that
    fetch every link in a message must not confirm on the reader's behalf; the POST does."""
    from web.errors import status_of
    from web.store.errors import BadLink, StoreError

    settings = current_app.extensions["tickerbell_settings"]
    session = get_db()
    try:
        if request.method == "POST":
            ch = ch_store.confirm(session, settings, token)
            return render_template("channel_confirm.html", state="confirmed", address=ch.target)
        from alerts.confirmation import ConfirmationInvalid, read_confirmation_token

        try:
            address = read_confirmation_token(settings.secret_key.get(), token).address
        except ConfirmationInvalid as exc:
            raise BadLink(str(exc)) from None
        return render_template("channel_confirm.html", state="ask", address=address, token=token)
    except StoreError as exc:
        return render_template("channel_confirm.html", state="invalid", message=exc.message), status_of(exc)


@bp.get("/alerts")
@login_required
def alerts() -> ResponseReturnValue:
    return render_template("alerts.html", symbols=wls.user_symbols(get_db(), uid()))


@bp.get("/alerts/<path:alert_id>")
@login_required
def alert_detail(alert_id: str) -> ResponseReturnValue:
    session = get_db()
    alert = history.get_alert(session, uid(), alert_id)
    names = history.rule_names(session, uid())
    return render_template("alert_detail.html", alert=history.alert_json(alert, names),
                           deliveries=[history.delivery_json(d, c) for d, c in history.deliveries(session, uid(), alert_id=alert.id)])


@bp.get("/overview")
@login_required
def overview() -> ResponseReturnValue:
    return render_template("overview.html", symbols=wls.user_symbols(get_db(), uid()))


@bp.get("/status")
@login_required
def status() -> ResponseReturnValue:
    from web.status import forecast_drift, may_view

    if not may_view(current_user):
        abort(403)
    return render_template("status.html", drift=forecast_drift(get_db()))


@bp.get("/account")
@login_required
def account() -> ResponseReturnValue:
    return render_template("account.html", public_url=current_app.extensions["tickerbell_settings"].public_url)

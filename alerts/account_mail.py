"""The mails an account holder asks for, which are no deliveries: the link that confirms an email
channel's address, and a sign-up's mail (its link, or a notice that the address has an account).

One attempt each, no delivery row: a failure is logged and the user asks again. Both are throttled
per address by the caller (``first_in_window``, a Redis window in :mod:`alerts.tasks`).
"""

from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from alerts import messages
from alerts.messages import dated, mail_domain
from alerts.retry import NotifyConfig
from alerts.transport import send_email
from events import models
from events.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["send_confirmation", "send_signup_mail"]


def send_confirmation(sessions: sessionmaker[Session], channel_id: int, settings: Settings,
                      config: NotifyConfig, first_in_window: Callable[[str], bool] | None = None) -> str:
    """Mail the link that confirms an email channel's address: ``sent``, ``skipped`` (no such
    unconfirmed email channel), ``throttled`` (``first_in_window(address)`` says this address was
    mailed a link lately, by any account: creating, deleting and re-creating channels, or asking
    again, must not turn Tickerbell into a mail cannon) or ``failed`` (logged; ask again later)."""
    from alerts.confirmation import MAX_AGE_S, confirmation_token, confirmation_url

    with sessions() as s:
        channel = s.get(models.Channel, channel_id)
        if channel is None or channel.kind != "email" or channel.confirmed_at is not None:
            return "skipped"
        if first_in_window is not None and not first_in_window(channel.target):
            log.info("channel %s: a confirmation mail went to this address lately; not another", channel_id)
            return "throttled"
        token = confirmation_token(settings.secret_key.get(), channel.id, channel.target)
        msg = messages.confirmation_email(channel.name, channel.target, confirmation_url(settings.public_url, token),
                                          settings.mail_from, MAX_AGE_S // 3600)
    outcome = send_email(settings.smtp_url.get(), dated(msg, domain=mail_domain(settings.public_url)),
                         config.smtp_timeout_s)
    if not outcome.ok:
        log.warning("channel %s: the confirmation mail was not sent: %s", channel_id, outcome.error)
        return "failed"
    log.info("channel %s: confirmation mail sent", channel_id)
    return "sent"


def send_signup_mail(sessions: sessionmaker[Session], user_id: int, kind: str, settings: Settings,
                     config: NotifyConfig, first_in_window: Callable[[str], bool] | None = None) -> str:
    """The mail a sign-up sends (:mod:`alerts.signup`): ``kind`` ``link`` mails an unconfirmed
    account its confirmation link, ``taken`` tells a confirmed account's owner that someone tried
    to sign up with the address. ``sent``, ``skipped`` (no such account, or it is no longer in that
    state), ``throttled`` (``first_in_window(address)`` says this address had such a mail lately:
    signing up over and over must not mail an address over and over) or ``failed`` (logged)."""
    from alerts.signup import MAX_AGE_S, link_email, signup_token, signup_url, taken_email

    with sessions() as s:
        user = s.get(models.User, user_id)
        if user is None or kind not in ("link", "taken") or (user.email_confirmed_at is None) != (kind == "link"):
            return "skipped"
        if first_in_window is not None and not first_in_window(user.email):
            log.info("user %s: a sign-up mail went to this address lately; not another", user_id)
            return "throttled"
        if kind == "link":
            token = signup_token(settings.secret_key.get(), user.id, user.email, user.password_hash)
            msg = link_email(user.email, signup_url(settings.public_url, token), settings.mail_from, MAX_AGE_S // 3600)
        else:
            msg = taken_email(user.email, settings.public_url, settings.mail_from)
    outcome = send_email(settings.smtp_url.get(), dated(msg, domain=mail_domain(settings.public_url)),
                         config.smtp_timeout_s)
    if not outcome.ok:
        log.warning("user %s: the sign-up mail (%s) was not sent: %s", user_id, kind, outcome.error)
        return "failed"
    log.info("user %s: sign-up mail (%s) sent", user_id, kind)
    return "sent"

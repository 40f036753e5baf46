"""SSRF guard: refused addresses, DNS names, and redirects checked hop by hop (a real HTTP server)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from alerts import netguard
from alerts.netguard import Target, UnsafeURL, check_url, safe_request
from alerts.transport import new_http_client
from tests.alerts.conftest import Receiver
from tests.alerts.rebinding import CHECKED_PUBLIC, REBIND_NAME, Rebinding, rebinding  # noqa: F401 (fixture)


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.8.9.10:8080/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.5/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.10.1/", "link-local"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://224.0.0.1/", "multicast"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://240.0.0.1/", "reserved"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[64:ff9b::7f00:1]/", "loopback"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://[fc00::1]/", "private"),
    ("http://localhost:5000/", "localhost resolves to a non-public address"),
    ("ftp://example.com/", "only http and https"),
    ("http:///nohost", "no host"),
    ("http://no-such-host.invalid/", "cannot resolve"),
])
def test_unsafe_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=reason):
        check_url(url, allow_private=False)


def test_a_refused_name_does_not_say_what_it_resolves_to() -> None:
    with pytest.raises(UnsafeURL) as refused:
        check_url("http://localhost:5000/hook", allow_private=False)
    message = str(refused.value)
    assert message == "refused: localhost resolves to a non-public address"
    assert "127.0.0.1" not in message and "::1" not in message and "loopback" not in message


def test_public_addresses_pass_and_the_operator_can_allow_private_ones() -> None:
    check_url("https://8.8.8.8/webhook", allow_private=False)
    check_url("http://[2606:4700:4700::1111]/", allow_private=False)
    check_url("http://127.0.0.1:8080/hook", allow_private=True)
    check_url("http://localhost/", allow_private=True)
    with pytest.raises(UnsafeURL, match="metadata"):
        check_url("http://169.254.169.254/", allow_private=True)  # never, whatever the setting
    with pytest.raises(UnsafeURL, match="metadata"):
        check_url("http://[::ffff:169.254.169.254]/", allow_private=True)


def test_redirects_are_followed_by_hand_and_each_hop_is_checked(receiver: Receiver) -> None:
    receiver.script["/start"] = [(302, {"location": "/final"})]
    receiver.script["/evil"] = [(307, {"location": "http://169.254.169.254/latest/meta-data/"})]
    receiver.script["/private"] = [(301, {"location": "http://10.0.0.7/internal"})]
    with httpx.Client() as client:
        ok = safe_request(client, "POST", receiver.url("/start"), allow_private=True, content=b"{}")
        assert ok.status_code == 200
        assert [r.path for r in receiver.got()] == ["/start", "/final"]
        with pytest.raises(UnsafeURL, match="metadata"):
            safe_request(client, "POST", receiver.url("/evil"), allow_private=True, content=b"{}")
        assert receiver.got()[-1].path == "/evil"  # the redirect itself was never followed
        # a host the operator did not allow: loopback is refused before any request leaves
        with pytest.raises(UnsafeURL, match="loopback"):
            safe_request(client, "POST", receiver.url("/private"), allow_private=False, content=b"{}")
    assert len(receiver.got("/private")) == 0
    assert receiver.got("/start")[0].headers["host"] == f"127.0.0.1:{receiver.port}"


def test_a_dns_name_is_pinned_to_the_address_that_was_checked(receiver: Receiver) -> None:
    with httpx.Client() as client:
        response = safe_request(client, "POST", f"http://localhost:{receiver.port}/named", allow_private=True,
                                content=b"x")
    assert response.status_code == 200
    assert receiver.got("/named")[0].headers["host"] == f"localhost:{receiver.port}"


# --- DNS rebinding: the name answers a public address when checked, loopback when asked again ---------


def _unpinned(url: str, target: Target) -> tuple[str, dict[str, Any], str]:
    """What the guard would do without pinning: send to the URL as given (the client resolves it again)."""
    return url, {}, urlsplit(url).netloc


def test_a_rebinding_name_is_connected_at_the_public_address_that_was_checked(
        receiver: Receiver, rebinding: Rebinding) -> None:
    url = f"http://{REBIND_NAME}:{receiver.port}/rebind"
    with new_http_client() as client, pytest.raises(httpx.ConnectError):
        safe_request(client, "POST", url, allow_private=False, content=b"x", timeout_s=5)
    assert rebinding.answers == [CHECKED_PUBLIC]  # resolved once, by the guard: no second lookup
    assert rebinding.connects == [(CHECKED_PUBLIC, receiver.port)]  # the checked address, refused by the test
    assert receiver.got() == []


def test_control_without_pinning_the_rebound_name_reaches_the_loopback_receiver(
        receiver: Receiver, rebinding: Rebinding, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: with ``_pinned`` disabled the same request reaches loopback."""
    monkeypatch.setattr(netguard, "_pinned", _unpinned)
    url = f"http://{REBIND_NAME}:{receiver.port}/rebind"
    with new_http_client() as client:
        response = safe_request(client, "POST", url, allow_private=False, content=b"x", timeout_s=5)
        response.close()
    assert response.status_code == 200
    assert rebinding.answers == [CHECKED_PUBLIC, "127.0.0.1"]  # checked one address, connected to another
    assert rebinding.connects == [("127.0.0.1", receiver.port)]
    assert [r.path for r in receiver.got()] == ["/rebind"]


def test_a_rebinding_redirect_target_is_connected_at_its_checked_address(
        receiver: Receiver, rebinding: Rebinding) -> None:
    """Every hop is pinned: a loopback first hop (allowed by the operator) redirecting to the rebinding name."""
    receiver.script["/start"] = [(307, {"location": f"http://{REBIND_NAME}:{receiver.port}/rebind"})]
    with new_http_client() as client, pytest.raises(httpx.ConnectError):
        safe_request(client, "POST", receiver.url("/start"), allow_private=True, content=b"x", timeout_s=5)
    assert rebinding.answers == [CHECKED_PUBLIC]
    assert rebinding.connects == [("127.0.0.1", receiver.port), (CHECKED_PUBLIC, receiver.port)]
    assert [r.path for r in receiver.got()] == ["/start"]

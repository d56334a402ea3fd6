"""The operator console over real HTTP: token login into a Redis session, CSRF, the status dashboard, certificate
lookup with hold / release / revoke, the audit log, and the IdP's RP clients page with the same login."""

from __future__ import annotations

import dataclasses
import re

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ReasonFlags, ocsp

from devstack.http import LiveServer
from revocation.storage.store import CertificateStatus

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def console(revocation_config, revocation_services):
    """The revocation service with the console's plain-http development cookie, and a logged-in browser."""
    from revocation.app import create_app

    config = dataclasses.replace(revocation_config, console_insecure_dev_cookies=True)
    with LiveServer(create_app(config, revocation_services)) as live:
        live.services = revocation_services
        live.token = revocation_services.operators.add("olivia")
        yield live


def log_in(base_url: str, token: str) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    page = browser.post(f"{base_url}/operator/login", data={"token": token}, timeout=30)
    return browser, page


def csrf_of(page: requests.Response) -> str:
    return CSRF.search(page.text).group(1)


def look_up(browser, console, page, card, issuer="auth") -> requests.Response:
    serial = card["auth" if issuer == "auth" else "signing"].serial_number
    return browser.post(f"{console.url}/operator/certificate", timeout=30,
                        data={"csrf": csrf_of(page), "issuer": issuer, "serial": f"{serial:X}"})


def act(browser, console, page, card, action, comment="verified by phone with the holder", reason=None, csrf=None):
    data = {"csrf": csrf if csrf is not None else csrf_of(page), "issuer": "auth",
            "serial": f"{card['auth'].serial_number:X}", "action": action, "comment": comment}
    if reason:
        data["reason"] = reason
    return browser.post(f"{console.url}/operator/certificate/action", data=data, timeout=30)


def ocsp_status(console, card, dev_ca):
    der = ocsp.OCSPRequestBuilder().add_certificate(card["auth"], dev_ca.auth.certificate, hashes.SHA256()).build()
    answer = requests.post(f"{console.url}/ocsp", data=der.public_bytes(serialization.Encoding.DER), timeout=30,
                           headers={"Content-Type": "application/ocsp-request"})
    response = ocsp.load_der_ocsp_response(answer.content)
    return response.certificate_status, response.revocation_reason


def test_pages_need_a_login_and_a_bad_token_is_refused_in_plain_words(console):
    for path in ("/operator/", "/operator/certificate", "/operator/audit"):
        answer = requests.get(console.url + path, allow_redirects=False, timeout=30)
        assert answer.status_code == 302 and answer.headers["Location"].endswith("/operator/login")
    browser, page = log_in(console.url, "rvop_not-a-token")
    assert page.status_code == 401 and "unknown or disabled" in page.text
    assert "rvop_not-a-token" not in page.text and not browser.cookies
    refused = requests.post(f"{console.url}/operator/certificate/action", allow_redirects=False, timeout=30,
                            data={"issuer": "auth", "serial": "AB", "action": "revoke", "comment": "x"})
    assert refused.status_code == 302  # to the login page, nothing done


def test_login_sets_a_strict_host_only_session_cookie_and_pages_are_not_cached(console):
    browser, page = log_in(console.url, console.token)
    assert page.status_code == 200 and "olivia" in page.text
    assert page.history[0].status_code == 302
    cookie = page.history[0].headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie and "Domain" not in cookie
    assert console.token not in cookie
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    stored = console.services.redis.keys("rv:console:*")
    assert stored and all(browser.cookies["mykey-operator"].encode() not in key for key in stored)


def test_production_cookie_is_host_prefixed_and_secure(revocation_service):
    token = revocation_service.services.operators.add("quinn")
    answer = requests.post(f"{revocation_service.url}/operator/login", data={"token": token}, timeout=30,
                           allow_redirects=False)
    assert answer.headers["Set-Cookie"].startswith("__Host-mykey-operator=") and "Secure" in answer.headers[
        "Set-Cookie"]


def test_dev_cookies_are_refused_off_loopback(revocation_config):
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        dataclasses.replace(revocation_config, base_url="https://rv.example.jp", console_insecure_dev_cookies=True)


def test_dashboard_shows_stream_health_and_every_crl_shard(console, issue_card):
    issue_card()
    console.services.crl.rebuild_all()
    _, page = log_in(console.url, console.token)
    assert "Event stream" in page.text and "dead letters" in page.text
    rows = re.findall(r"<td>(auth|signing)</td><td class=\"num\">(\d+)</td>", page.text)
    assert len(rows) == 2 * console.services.config.crl_shards
    assert "never published" not in page.text


def test_hold_release_and_revoke_from_the_certificate_page(console, issue_card, dev_ca):
    card = issue_card()
    browser, page = log_in(console.url, console.token)
    found = look_up(browser, console, page, card)
    assert found.status_code == 200 and f"{card['auth'].serial_number:X}" in found.text
    assert ">good<" in found.text and "Hold" in found.text

    held = act(browser, console, found, card, "hold")
    assert held.status_code == 200 and "Done." in held.text and ">on hold<" in held.text
    assert ocsp_status(console, card, dev_ca) == (ocsp.OCSPCertStatus.REVOKED, ReasonFlags.certificate_hold)
    assert "verified by phone with the holder" in held.text  # the audit row on the page

    released = act(browser, console, held, card, "release")
    assert ">good<" in released.text
    assert ocsp_status(console, card, dev_ca) == (ocsp.OCSPCertStatus.GOOD, None)

    no_reason = act(browser, console, released, card, "revoke")
    assert no_reason.status_code == 400 and "invalid_reason" in no_reason.text
    revoked = act(browser, console, released, card, "revoke", reason="keyCompromise")
    assert ">revoked<" in revoked.text and "Revoke</button>" not in revoked.text
    assert console.services.store.get("auth", card["auth"].serial_number).status is CertificateStatus.REVOKED

    actions = [e for e in console.services.audit.read(10) if e["actor"] == "operator:olivia"]
    assert [e["action"] for e in actions] == ["certificate_revoke", "certificate_release", "certificate_hold"]


def test_forms_without_the_session_csrf_token_change_nothing(console, issue_card):
    card = issue_card()
    browser, page = log_in(console.url, console.token)
    for csrf in ("", "forged"):
        refused = act(browser, console, page, card, "hold", csrf=csrf)
        assert refused.status_code == 403 and "nothing was changed" in refused.text
    assert console.services.store.get("auth", card["auth"].serial_number).status is CertificateStatus.GOOD
    other, _ = log_in(console.url, console.services.operators.add("mallory"))
    assert act(other, console, page, card, "hold").status_code == 403  # another session's token


def test_bad_lookups_and_comments_get_a_clear_sentence(console, issue_card):
    card = issue_card()
    browser, page = log_in(console.url, console.token)
    unknown = browser.post(f"{console.url}/operator/certificate", timeout=30,
                           data={"csrf": csrf_of(page), "issuer": "auth", "serial": "ABCDEF0123"})
    assert unknown.status_code == 404 and "No certificate with that issuer and serial" in unknown.text
    assert "ABCDEF0123" not in unknown.text  # a refused serial is not echoed back
    malformed = browser.post(f"{console.url}/operator/certificate", timeout=30,
                             data={"csrf": csrf_of(page), "issuer": "auth", "serial": "not hex"})
    assert malformed.status_code == 400 and "hexadecimal" in malformed.text
    assert "not hex" not in malformed.text
    my_number_like = act(browser, console, page, card, "hold", comment="holder 123456789018 called")
    assert my_number_like.status_code == 422 and "123456789018" not in my_number_like.text
    empty = act(browser, console, page, card, "hold", comment="  ")
    assert empty.status_code == 400 and "Say why" in empty.text
    assert console.services.store.get("auth", card["auth"].serial_number).status is CertificateStatus.GOOD


def test_audit_page_lists_actions_and_pages_back(console, issue_card):
    card = issue_card()
    browser, page = log_in(console.url, console.token)
    for _ in range(3):
        act(browser, console, page, card, "hold")
        act(browser, console, page, card, "release")
    audit = browser.get(f"{console.url}/operator/audit", timeout=30)
    assert audit.status_code == 200 and audit.text.count("operator:olivia") >= 6
    assert browser.get(f"{console.url}/operator/audit?before=nonsense", timeout=30).status_code == 400


def test_logout_and_disabling_the_token_end_the_session(console):
    browser, page = log_in(console.url, console.token)
    assert browser.get(f"{console.url}/operator/audit", timeout=30).url.endswith("/operator/audit")
    console.services.operators.disable("olivia")
    assert browser.get(f"{console.url}/operator/audit", timeout=30).url.endswith("/operator/login")

    token = console.services.operators.add("olivia")
    browser, page = log_in(console.url, token)
    out = browser.post(f"{console.url}/operator/logout", data={"csrf": csrf_of(page)}, timeout=30)
    assert out.url.endswith("/operator/login")
    assert not console.services.redis.keys("rv:console:*") or all(
        console.services.redis.hget(key, "name") != b"olivia" for key in console.services.redis.keys("rv:console:*"))


def test_idp_console_lists_rp_clients_with_the_same_operator_login(idp_service):
    token = idp_service.revocation.services.operators.add("rita")
    client, secret = idp_service.services.clients.add("Console Test Shop", ["https://shop.example.jp/cb"])
    _, page = log_in(idp_service.url, token)
    assert page.status_code == 200 and page.url.endswith("/operator/clients")
    assert "Console Test Shop" in page.text and client.client_id in page.text and "shop.example.jp" in page.text
    assert secret not in page.text and (client.client_secret_hash or "-") not in page.text
    assert requests.get(f"{idp_service.url}/operator/clients", timeout=30).url.endswith("/operator/login")

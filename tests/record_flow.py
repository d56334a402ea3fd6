"""Open a holder's sealed access record as they would: the account page asks, the real `python -m nfc_bridge history`
signs with the virtual card, and the next account page view shows the record (once)."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys

from jpki import parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard
from tests.idp_flow import ROOT, Browser, bridge_login, handle_url_of
from tests.log_registry import register_sensitive


def bridge_history(url: str, card, pins: str = "1234\n", timeout: float = 60):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "nfc_bridge", "history", url, "--reader", "virtual",
                           "--card", str(card), "--pin-stdin"], input=pins, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def account_browser(idp_service, card) -> Browser:
    """A browser logged in to the account page with `card`."""
    browser = Browser(idp_service.url)
    assert browser.get("/account?lang=en").headers["Location"] == "/login"
    result = bridge_login(handle_url_of(browser.get("/login").text), card)
    assert result.returncode == 0, result.stderr
    assert browser.post("/login/continue").headers["Location"] == "/account"
    return browser


def open_record(browser: Browser, card, lang: str = "en", expect_ok: bool = True,
                ) -> tuple[str, subprocess.CompletedProcess]:
    """Ask to open the record, let the bridge sign with `card`; the next account page (in `lang`) and the bridge run."""
    page = browser.get(f"/account?lang={lang}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert browser.post("/account/history/open", {"csrf": csrf}).headers["Location"] == "/account/history"
    waiting = browser.get(f"/account/history?lang={lang}").text
    url = html.unescape(re.search(r'<pre id="command">([^<]+)</pre>', waiting).group(1)).split()[4]
    register_sensitive(url.rsplit("/", 1)[1])  # a one-use handle: no log line may carry it
    run = bridge_history(url, card)
    assert (run.returncode == 0) == expect_ok, run.stdout + run.stderr
    state = browser.get("/account/history/status").json()["state"]
    assert state == ("verified" if expect_ok else "failed")
    return browser.get(f"/account?lang={lang}").text, run


def certificate_digest(idp_service, card) -> str:
    """The keyed hash the access record knows the card's auth certificate by."""
    serial = parse_certificate(VirtualCard.load(card).certificate(CertificateKind.AUTH)).serial
    return idp_service.services.mykey.certificate_digest("auth", serial)


def read_record(idp_service, card, pin: str = "1234"):
    """The holder's opened record, read the way the platform does after the bridge signed (without a browser): the
    virtual card signs the history message, the key is derived from that signature, the record is opened with it."""
    import datetime as dt

    from jpki.signature import history_message
    from mykey.record import holder_key
    from nfc_bridge.client import JpkiClient
    from nfc_bridge.readers import open_reader

    services = idp_service.services
    with open_reader("virtual", card, None) as transport:
        client = JpkiClient.connect(transport)
        signature = client.sign(CertificateKind.AUTH, history_message(services.config.origin), pin)
        certificate = parse_certificate(client.read_certificate(CertificateKind.AUTH))
    account_id = services.mykey.resolve("auth", certificate.serial, services.clock()).account_id
    return services.access_record.open(account_id, holder_key(signature), certificate_digest(idp_service, card),
                                       dt.date.today(), services.clock())

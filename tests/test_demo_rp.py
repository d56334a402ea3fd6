"""The demo relying party (Authlib's Flask client) logs a person in with the virtual card, end to end."""

from __future__ import annotations

import re

import pytest
import requests

from demo_rp.app import create_app
from devstack.http import LiveServer
from devstack.processes import free_port
from tests.idp_flow import bridge_login, handle_url_of


@pytest.fixture
def demo_rp(idp_service):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client, secret = idp_service.services.clients.add("Example Shop", [f"{base}/callback"],
                                                      post_logout_redirect_uris=[f"{base}/"])
    with LiveServer(create_app(idp_service.url, client.client_id, secret, base), port) as live:
        yield live


def log_in(idp_service, demo_rp, card, path="/login", pins="1234\n", approve=True):
    """A browser (requests follows the redirects between the RP and the IdP) and the card on the side."""
    browser = requests.Session()
    login_page = browser.get(demo_rp.url + path, timeout=30)
    assert login_page.url == f"{idp_service.url}/login" and "python -m nfc_bridge login" in login_page.text
    assert bridge_login(handle_url_of(login_page.text), card, pins).returncode == 0
    page = browser.post(f"{idp_service.url}/login/continue", timeout=30)
    if 'action="/consent"' in page.text:
        token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
        page = browser.post(f"{idp_service.url}/consent", timeout=30,
                            data={"token": token, "decision": "approve" if approve else "deny"})
    return browser, page


def test_the_demo_rp_logs_a_person_in_and_shows_the_claims(idp_service, demo_rp, make_card):
    card = make_card()
    idp_service.register_card(card)
    browser, home = log_in(idp_service, demo_rp, card)
    assert home.status_code == 200 and 'id="welcome"' in home.text
    assert '"acr": "aal3"' in home.text and '"sub"' in home.text and 'id="facts"' not in home.text
    out = browser.post(f"{demo_rp.url}/logout", allow_redirects=False, timeout=30)
    assert out.headers["Location"].startswith(f"{idp_service.url}/logout?")
    back = browser.get(out.headers["Location"], allow_redirects=False, timeout=30)
    assert back.headers["Location"] == f"{demo_rp.url}/"


def test_the_demo_rp_receives_the_four_facts_when_asked(idp_service, demo_rp, make_card):
    card = make_card()
    idp_service.register_card(card)
    _, home = log_in(idp_service, demo_rp, card, path="/login?facts=1", pins="1234\nABC123\n")
    assert 'id="facts"' in home.text and "デジタル 太郎" in home.text and "1990-01-02" in home.text


def test_a_refused_consent_comes_back_as_access_denied(idp_service, demo_rp, make_card):
    card = make_card()
    idp_service.register_card(card)
    _, home = log_in(idp_service, demo_rp, card, approve=False)
    assert home.status_code == 400 and "access_denied" in home.text

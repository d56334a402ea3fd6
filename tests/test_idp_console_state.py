"""The IdP's console page: its red/amber/green state and its charts of card logins (idp/operator_overview.py), from
real logins — the real bridge with virtual cards against the IdP and the revocation service over HTTP, real Redis.
A card never registered with the revocation service is refused as `revocation_unknown`, as when the revocation
answer cannot be had; the count below which a share says nothing is lowered for the test, the logins are real."""

from __future__ import annotations

import re
import secrets
from html import unescape

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from idp import operator_overview
from tests.idp_flow import Browser, bridge_login
from tests.test_operator_console import log_in


def card_login(idp_service, client, card) -> bool:
    """One login through the real bridge; True when the card's proof was verified."""
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uris[0],
              "scope": "openid", "state": "st", "nonce": secrets.token_urlsafe(8),
              "code_challenge": create_s256_code_challenge("v" * 50), "code_challenge_method": "S256"}
    handle = Browser(idp_service.url).start(f"{idp_service.url}/authorize?" + requests.compat.urlencode(params))
    return bridge_login(handle, card).returncode == 0


@pytest.fixture
def idp_console(idp_service):
    token = idp_service.revocation.services.operators.add("rita")
    client, _ = idp_service.services.clients.add("State Shop", ["https://state.example.jp/cb"])

    def page() -> str:
        _, answer = log_in(idp_service.url, token)
        assert answer.status_code == 200 and answer.url.endswith("/operator/clients")
        return answer.text

    return client, page


def state_of(page: str) -> tuple[str, list[str]]:
    return (re.search(r'class="state state-(red|amber|green)"', page).group(1),
            re.findall(r'data-code="([a-z_]+)"', page))


def chart_rows(page: str, chart_id: str) -> list[list[str]]:
    figure = re.search(rf'<figure class="chart" id="{chart_id}">(.*?)</figure>', page, re.S).group(1)
    return [[unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", figure, re.S) if "<td" in row]


def test_verified_logins_are_green_and_counted_on_the_charts(idp_service, idp_console, make_card):
    client, page = idp_console
    assert state_of(page()) == ("green", [])  # nothing yet: nothing wrong
    card = make_card()
    idp_service.register_card(card)
    assert card_login(idp_service, client, card) and card_login(idp_service, client, card)
    text = page()
    assert state_of(text) == ("green", []) and "All clear" in text
    assert sum(int(row[1]) for row in chart_rows(text, "chart-logins")) == 2
    assert dict(chart_rows(text, "chart-results"))["ok"] == "2"
    assert "State Shop" in text.split('id="clients"')[1]  # the client list is still there, under the charts


def test_revocation_answers_missing_are_amber_then_red_when_no_login_gets_through(idp_service, idp_console,
                                                                                  make_card, monkeypatch):
    client, page = idp_console
    stranger = make_card()  # never registered: its status cannot be established, the login fails closed
    assert not card_login(idp_service, client, stranger)
    text = page()
    assert state_of(text) == ("amber", ["revocation_unknown"])
    assert "1 card login(s) in the last 15 minutes were refused" in text
    assert dict(chart_rows(text, "chart-results"))["revocation_unknown"] == "1"

    monkeypatch.setattr(operator_overview, "MIN_LOGINS", 2)
    assert not card_login(idp_service, client, stranger)
    assert state_of(page()) == ("red", ["logins_failing", "revocation_unknown"])

    card = make_card()
    idp_service.register_card(card)
    assert card_login(idp_service, client, card)  # one gets through: no longer red, still mostly refused
    assert state_of(page()) == ("amber", ["revocation_unknown", "logins_mostly_refused"])

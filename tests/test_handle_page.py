"""The QR code's handle URL opened in a phone's browser: a page that says what to do, in Japanese and English, that
spends nothing and reveals nothing; everything that is not a browser keeps the JSON (idp/login/bridge_api.py).

Real IdP over HTTP, real Redis and revocation service, the real bridge with a virtual card; the phone-sized
Chromium screenshot lands in test-artifacts/browser/ with the other browser tests'.
"""

from __future__ import annotations

import re
import secrets

import pytest
import requests

from tests.idp_flow import bridge_login, query_of
from tests.test_browser import ARTIFACTS, chromium  # noqa: F401 - the fixture
from tests.test_login_api import REDIRECT, start

# What Chromium and Safari send on a navigation.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
LOGIN_FIELDS = {"rp_name", "short_code", "origin", "challenge", "signing_challenge", "share", "expires_at",
                "submit_url", "submit_token"}
SAYS = {  # language → what the page must say: scan with an app, or the card reader; the PIN never in a web page
    "ja": ("アプリ", "カードリーダー", "ウェブページに入力することはありません"),
    "en": ("app", "card reader", "never into this page or any other web page"),
}


@pytest.fixture
def rp(idp_service):
    return idp_service.services.clients.add("Example Shop", [REDIRECT])


@pytest.fixture
def card(make_card, idp_service):
    path = make_card()
    idp_service.register_card(path)
    return path


def open_in_browser(url: str, lang: str) -> requests.Response:
    return requests.get(url, timeout=10, headers={"Accept": BROWSER_ACCEPT, "Accept-Language": f"{lang},en;q=0.5"})


def assert_no_form_or_secret(text: str, *secrets_: str) -> None:
    assert not re.search(r"<\s*(input|form|textarea|select|script)\b", text, re.IGNORECASE)
    for secret in secrets_:
        assert secret and secret not in text


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_a_browser_gets_a_page_that_says_what_to_do(idp_service, rp, lang):
    _, handle_url, _ = start(idp_service, rp)
    page = open_in_browser(handle_url, lang)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    assert "Accept" in [v.strip() for v in page.headers["Vary"].split(",")]
    assert f'<html lang="{lang}">' in page.text and "<h1" in page.text and "<h2" in page.text
    assert 'name="viewport"' in page.text
    for sentence in SAYS[lang]:
        assert sentence in page.text
    # The login's secrets, learnt afterwards by the API's one fetch, are nowhere in the page; nor is the handle.
    fetched = requests.get(handle_url, timeout=10).json()
    assert set(fetched) == LOGIN_FIELDS
    handle = handle_url.rsplit("/", 1)[1]
    assert_no_form_or_secret(page.text, fetched["challenge"], fetched["submit_token"], fetched["short_code"], handle)
    assert fetched["rp_name"] not in page.text


def test_the_handle_still_works_for_the_bridge_after_the_page(idp_service, rp, card):
    browser, handle_url, _ = start(idp_service, rp)
    for lang in ("ja", "en", "ja"):  # a camera app's prefetch, then the holder's own look, twice over
        assert open_in_browser(handle_url, lang).status_code == 200
    result = bridge_login(handle_url, card)
    assert result.returncode == 0, result.stderr
    final = browser.finish()
    assert final.status_code == 302 and final.headers["Location"].startswith(REDIRECT)
    assert "code" in query_of(final.headers["Location"])


@pytest.mark.parametrize("accept", ["*/*", "application/json", "text/html"])
def test_a_head_request_spends_nothing(idp_service, rp, accept):
    """A prefetcher may probe the link with HEAD, whatever it accepts: the handle stays good for the app."""
    _, handle_url, _ = start(idp_service, rp)
    for _ in range(2):
        probed = requests.head(handle_url, headers={"Accept": accept}, timeout=10)
        assert probed.status_code == 200 and probed.headers["Cache-Control"] == "no-store" and not probed.content
    fetched = requests.get(handle_url, timeout=10)
    assert fetched.status_code == 200 and set(fetched.json()) == LOGIN_FIELDS


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html;q=0.5, application/json",
                                    "application/json, text/html"])
def test_anything_but_a_browser_keeps_the_json(idp_service, rp, accept):
    _, handle_url, _ = start(idp_service, rp)
    session = requests.Session()
    if accept is None:
        del session.headers["Accept"]
    else:
        session.headers["Accept"] = accept
    fetched = session.get(handle_url, timeout=10)
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "application/json"
    assert set(fetched.json()) == LOGIN_FIELDS
    assert fetched.headers["Cache-Control"] == "no-store" and fetched.headers["Vary"] == "Accept"
    again = session.get(handle_url, timeout=10)  # spent, as before
    assert again.status_code == 404 and again.json()["error"] == "unknown_handle"
    assert again.headers["Vary"] == "Accept"


def test_an_unknown_handle_gets_the_same_page_as_a_good_one(idp_service):
    # The page does not look the handle up, so it cannot tell anyone whether a handle is alive.
    unknown = open_in_browser(f"{idp_service.url}/api/login/{secrets.token_urlsafe(24)}", "en")
    assert unknown.status_code == 200 and "card reader" in unknown.text


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_a_phone_browser_shows_the_page(chromium, idp_service, rp, card, lang):  # noqa: F811
    browser, handle_url, _ = start(idp_service, rp)
    context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                   has_touch=True, locale="ja-JP" if lang == "ja" else "en-US")
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(handle_url)
        assert page.locator("html").get_attribute("lang") == lang
        assert page.locator("h1").is_visible()
        assert page.locator("input, form, textarea").count() == 0
        # Laid out for the phone: nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"handle-page-phone-{lang}.png"), full_page=True)
    finally:
        context.close()
    assert bridge_login(handle_url, card).returncode == 0  # the phone's browser spent nothing
    assert browser.finish().status_code == 302


def test_the_language_links_of_the_page_choose_its_language(idp_service, rp):
    _, handle_url, _ = start(idp_service, rp)
    english = open_in_browser(f"{handle_url}?lang=en", "ja")
    assert english.status_code == 200 and '<html lang="en">' in english.text
    assert requests.get(handle_url, timeout=10).status_code == 200  # still unspent

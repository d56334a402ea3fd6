"""What the account page says after each of its actions, in Japanese and English: a sentence, never the internal
code (`withdrawn`, `mykey_id_changed`, …); a refusal announced as an alert; a notice code the IdP does not know, or
any other text put in the URL, is not shown at all. A real IdP over HTTP, real Redis, a real card login."""

from __future__ import annotations

import re
import secrets
from html import unescape

import pytest

from idp.holder.pages import ACCOUNT_NOTICES, REFUSAL_NOTICES
from tests.test_holder_pages_wording import at_consent  # noqa: F401 - the fixture


@pytest.fixture
def account(at_consent):  # noqa: F811
    """A holder logged in at the account page (after allowing the shop): (browser, client, csrf)."""
    browser, client, _, _, return_to = at_consent
    final = browser.follow(browser.get(return_to))
    assert final.status_code == 302  # back to the shop with a code
    page = browser.get("/account?lang=en")
    assert page.status_code == 200
    return browser, client, re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def notice_after(browser, response, lang: str) -> tuple[str, str] | None:
    """Follow an action's redirect to the account page in `lang`: (the notice's role, its text), or None."""
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/account?notice=")
    page = browser.get(f"{location}&lang={lang}").text
    found = re.search(r'<p id="notice" role="(status|alert)"[^>]*>(.*?)</p>', page, re.S)
    return (found.group(1), unescape(found.group(2))) if found else None


def test_every_notice_is_a_sentence_in_both_languages_and_no_code_is_shown(account, idp_service):
    browser, client, csrf = account
    other = idp_service.services.mykey.resolve("auth", secrets.randbits(64), idp_service.services.clock())
    idp_service.services.mykey.set_custom_id(other.account_id, "Someone_Else7")
    actions = [
        ("mykey_id_changed", lambda: browser.post("/account/mykey-id", {"csrf": csrf, "mykey_id": "Notice_Me42"})),
        ("mykey_id_taken", lambda: browser.post("/account/mykey-id", {"csrf": csrf, "mykey_id": "someone_else7"})),
        ("mykey_id_invalid", lambda: browser.post("/account/mykey-id", {"csrf": csrf, "mykey_id": "x"})),
        ("mykey_id_released", lambda: browser.post("/account/mykey-id/release", {"csrf": csrf})),
        ("withdrawn", lambda: browser.post(f"/account/consents/{client.client_id}/withdraw", {"csrf": csrf})),
    ]
    for code, act in actions:
        response = act()
        assert response.headers["Location"] == f"/account?notice={code}"
        for lang, wording in (("en", ACCOUNT_NOTICES[code][0]), ("ja", ACCOUNT_NOTICES[code][1])):
            role, text = notice_after(browser, response, lang)
            assert text == wording and code not in text
            assert role == ("alert" if code in REFUSAL_NOTICES else "status")
        japanese = notice_after(browser, response, "ja")[1]
        assert not re.search(r"[a-z]{3,}", japanese.replace("MyKey", ""))  # Japanese words, no code or English
    # The actions were done, not only said: the consent is gone (the page lists consents only while the card has
    # opened the sealed record, so ask the store the IdP asks, by its keyed lookup).
    cookies = {c.name: c.value for c in browser.http.cookies}
    session_id = next(value for name, value in cookies.items() if name.endswith("mykey-session"))
    account_id = idp_service.services.sessions.get(session_id).account_id
    assert idp_service.services.consents.get(account_id, client.client_id) is None


def test_a_notice_the_idp_does_not_know_is_not_shown(account):
    browser, _, _ = account
    for value in ("mykey_id_error2", "Your card is locked: call 0120-000-000", "<b>hi</b>"):
        page = browser.get(f"/account?lang=en&notice={value}").text
        assert 'id="notice"' not in page and "0120" not in page and "hi</b>" not in page


def test_every_notice_code_the_account_page_redirects_with_has_wording():
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "idp" / "holder" / "pages.py").read_text()
    redirected = set(re.findall(r'notice=([a-z_]+)"', source))
    from mykey.directory import MyKeyIdError, MyKeyIdInvalid, MyKeyIdTaken

    redirected |= {error.code for error in (MyKeyIdError, MyKeyIdInvalid, MyKeyIdTaken)}  # ?notice={error.code}
    assert redirected <= ACCOUNT_NOTICES.keys()
    assert all(english and japanese for english, japanese in ACCOUNT_NOTICES.values())

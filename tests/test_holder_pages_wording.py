"""The holder pages say times in Japan time and disclosures in words, in Japanese and English: the consent page,
and the consents and access record on the account page (opened with the card, tests/record_flow.py). A real IdP
over HTTP, real Redis, the real bridge with a virtual card; known instants are written through the real stores and
read back over HTTP."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from html import unescape

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from idp.holder.pages import SHARED_WORDING, local_time, shared, shared_items
from idp.oidc.clients import SCOPES
from jpki import parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard
from tests.idp_flow import Browser, bridge_login, query_of
from tests.record_flow import certificate_digest, open_record

VERIFIER = "w" * 50
IDENTIFIER_EN = "An identifier for this website"


def _authorize(idp_service, client, scope: str) -> str:
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uris[0],
              "scope": scope, "state": "st", "nonce": secrets.token_urlsafe(8),
              "code_challenge": create_s256_code_challenge(VERIFIER), "code_challenge_method": "S256"}
    return f"{idp_service.url}/authorize?" + requests.compat.urlencode(params)


def _section(page: str, element_id: str) -> str:
    return page.split(f'id="{element_id}"')[1].split("</table>")[0].split("</ul>")[0]


def _cells(page: str, table_id: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", _section(page, table_id), re.S)[1:]  # past the heading row
    return [[unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in rows]


def _account_id(idp_service, card) -> str:
    serial = parse_certificate(VirtualCard.load(card).certificate(CertificateKind.AUTH)).serial
    return idp_service.services.mykey.resolve("auth", serial, idp_service.services.clock()).account_id


@pytest.fixture
def at_consent(idp_service, make_card):
    """A card login asking for name and address, stopped at the consent page: (browser, client, secret, card,
    the authorize response that shows the consent page)."""
    card = make_card()
    idp_service.register_card(card)
    client, secret = idp_service.services.clients.add("Wording Shop", ["https://wording.example.jp/cb"])
    browser = Browser(idp_service.url)
    handle = browser.start(_authorize(idp_service, client, "openid name address"))
    assert bridge_login(handle, card, pins="1234\nABC123\n").returncode == 0
    assert browser.get("/login/status").json()["state"] == "verified"
    back = browser.post("/login/continue")
    assert back.status_code == 302
    return browser, client, secret, card, back.headers["Location"]


def _consent_page(browser: Browser, return_to: str, language: str) -> str:
    browser.http.headers["Accept-Language"] = language
    page = browser.get(return_to)
    assert page.status_code == 200 and 'action="/consent"' in page.text
    return page.text


def test_the_consent_page_says_what_will_be_shared_in_words_in_both_languages(at_consent):
    browser, _, _, _, return_to = at_consent
    japanese = _consent_page(browser, return_to, "ja")
    english = _consent_page(browser, return_to, "en")
    assert re.findall(r"<li>([^<]+)</li>", _section(japanese, "share")) == ["氏名", "住所"]
    assert re.findall(r"<li>([^<]+)</li>", _section(english, "share")) == ["Your name", "Your address"]
    assert "このサイト専用の識別子" in japanese and "an identifier made only for it" in english
    assert not re.search(r"[A-Za-z]", "".join(re.findall(r">([^<]*)<", _section(japanese, "share"))))  # words only


def test_the_account_page_says_the_consent_and_the_release_in_words_and_japan_time(idp_service, at_consent):
    browser, client, secret, card, return_to = at_consent
    token = re.search(r'name="token" value="([^"]+)"', _consent_page(browser, return_to, "ja")).group(1)
    final = browser.follow(browser.post("/consent", {"token": token, "decision": "approve"}))
    exchanged = requests.post(f"{idp_service.url}/token", auth=(client.client_id, secret), timeout=10, data={
        "grant_type": "authorization_code", "code": query_of(final.headers["Location"])["code"],
        "redirect_uri": client.redirect_uris[0], "code_verifier": VERIFIER})
    assert exchanged.status_code == 200
    # The record opens with the card for one view at a time (tests/record_flow.py): once per language.
    japanese, english = open_record(browser, card, "ja")[0], open_record(browser, card, "en")[0]
    granted, released = (dt.datetime.strptime(re.search(r'<time datetime="([^"]+)"', _section(japanese, table))
                                              .group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
                         for table in ("consents", "history"))

    def japan(moment: dt.datetime) -> dt.datetime:  # Japan keeps UTC+9 all year
        return (moment + dt.timedelta(hours=9)).replace(tzinfo=None)

    g, r = japan(granted), japan(released)
    assert _cells(japanese, "consents")[0][:3] == [
        "Wording Shop", "このサイト専用の識別子、氏名・住所", f"{g.year}年{g.month}月{g.day}日 {g.hour}:{g.minute:02d}"]
    assert _cells(japanese, "history")[0][:3] == [
        f"{r.year}年{r.month}月{r.day}日 {r.hour}:{r.minute:02d}", "Wording Shop", "このサイト専用の識別子、氏名・住所"]
    assert _cells(english, "consents")[0][:3] == [
        "Wording Shop", f"{IDENTIFIER_EN}; your name and address",
        f"{g.day} {g.strftime('%B')} {g.year}, {g.hour}:{g.minute:02d} (JST)"]
    assert _cells(english, "history")[0][1:3] == ["Wording Shop", f"{IDENTIFIER_EN}; your name and address"]
    exact = granted.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f'<time datetime="{exact}">' in _section(japanese, "consents")
    for table, column in (("consents", 1), ("history", 2)):
        assert not re.search(r"[A-Za-z]", _cells(japanese, table)[0][column])  # no scope name, in words only
        for page in (japanese, english):
            assert "+00:00" not in _section(page, table) and "UTC" not in _section(page, table)


# (stored instant in UTC, Japanese, English): the date moves on across midnight UTC→JST, and the year with it
KNOWN_INSTANTS = [
    (dt.datetime(2026, 12, 2, 0, 35, 52, tzinfo=dt.UTC), "2026年12月2日 9:35", "2 December 2026, 9:35 (JST)"),
    (dt.datetime(2026, 12, 1, 15, 35, 52, tzinfo=dt.UTC), "2026年12月2日 0:35", "2 December 2026, 0:35 (JST)"),
    (dt.datetime(2026, 12, 31, 15, 0, 0, tzinfo=dt.UTC), "2027年1月1日 0:00", "1 January 2027, 0:00 (JST)"),
]


def test_known_utc_instants_are_shown_in_japan_time_on_the_account_page(idp_service, at_consent):
    browser, _, _, card, _ = at_consent
    services, account_id = idp_service.services, _account_id(idp_service, card)
    certificate = certificate_digest(idp_service, card)
    for index, (instant, _, _) in enumerate(KNOWN_INSTANTS):
        client, _ = services.clients.add(f"Site {index}", [f"https://site{index}.example.jp/cb"])
        services.consents.grant(account_id, client.client_id, ["openid", "birthdate", "gender"], instant)
        services.access_record.note_consent(account_id, certificate, client.client_id,
                                            ["openid", "birthdate", "gender"], instant)
        services.access_record.record(account_id, certificate, client.client_id, ["openid"], instant,
                                      token_type="card")
    japanese, english = open_record(browser, card, "ja")[0], open_record(browser, card, "en")[0]
    consents_ja = {row[0]: row for row in _cells(japanese, "consents")}
    consents_en = {row[0]: row for row in _cells(english, "consents")}
    history_ja = {row[1]: row for row in _cells(japanese, "history")}
    history_en = {row[1]: row for row in _cells(english, "history")}
    for index, (instant, in_japanese, in_english) in enumerate(KNOWN_INSTANTS):
        site = f"Site {index}"
        assert consents_ja[site][1:3] == ["このサイト専用の識別子、生年月日・性別", in_japanese]
        assert consents_en[site][1:3] == [f"{IDENTIFIER_EN}; your date of birth and gender", in_english]
        assert history_ja[site] == [in_japanese, site, "このサイト専用の識別子", "マイナンバーカード"]
        assert history_en[site] == [in_english, site, IDENTIFIER_EN, "My Number Card"]
        assert f'<time datetime="{instant:%Y-%m-%dT%H:%M:%SZ}">{in_japanese}</time>' in japanese


def test_every_scope_the_idp_offers_has_wording_in_both_languages_and_unknown_names_are_never_echoed():
    assert set(SCOPES) <= SHARED_WORDING.keys()
    for english, japanese in SHARED_WORDING.values():
        assert english and japanese and english.isascii() and not japanese.isascii()
    assert shared(["openid", "gender", "name", "address", "birthdate"], "en") == \
        f"{IDENTIFIER_EN}; your name, address, date of birth and gender"
    assert shared(["openid", "gender", "name", "address", "birthdate"], "ja") == \
        "このサイト専用の識別子、氏名・住所・生年月日・性別"
    assert shared(["openid", "x-legacy-scope"], "en") == f"{IDENTIFIER_EN}; other information"
    assert shared(["x-legacy-scope"], "ja") == "その他の情報"
    assert shared([], "en") == "Nothing" and shared([], "ja") == "なし"
    assert shared_items(["address", "name"], "en") == ["Your name", "Your address"]
    assert "x-legacy-scope" not in " ".join(shared_items(["x-legacy-scope"], "en"))
    with pytest.raises(ValueError):
        local_time(dt.datetime(2026, 12, 2, 0, 35), "ja")  # a time without its zone is refused, not guessed


def test_the_login_page_says_what_the_website_will_receive_in_words(idp_service):
    client, _ = idp_service.services.clients.add("Wording Login Shop", ["https://wording-login.example.jp/cb"])
    browser = Browser(idp_service.url)
    browser.start(_authorize(idp_service, client, "openid name address"))
    for language, lead, words, raw in (("en", "This website will receive:", "Your name and address", "name, address"),
                                       ("ja", "このサイトに提供される情報:", "氏名・住所", "name")):
        browser.http.headers["Accept-Language"] = language
        page = unescape(browser.get("/login").text)
        shown = re.search(re.escape(lead) + r"\s*<strong>(.*?)</strong>", page, re.S)[1]
        assert words in shown and raw not in shown

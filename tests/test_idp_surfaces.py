"""The IdP's other surfaces: key rotation, the clients CLI, logout, the account page, max_age, every error code
explained in two languages."""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.config import IdpConfig
from idp.login.messages import MESSAGES, explain
from idp.login.verification import ErrorCode
from idp.oidc.signing_keys import SigningKeys
from tests.idp_flow import Browser, bridge_login, query_of
from tests.record_flow import open_record

ROOT = Path(__file__).resolve().parents[1]


def test_every_error_code_is_explained_in_english_and_japanese():
    raised = {code.value for code in ErrorCode}
    for path in (ROOT / "idp").glob("*.py"):
        raised |= set(re.findall(r'(?:LoginError|VerificationError|error_page|error_response)\(\s*"([a-z_]+)"',
                                 path.read_text()))
    raised |= {"access_denied", "invalid_request", "invalid_client", "login_required", "consent_required"}
    missing = sorted(raised - set(MESSAGES))
    assert not missing, f"codes without an explanation: {missing}"
    for code, (english, japanese) in MESSAGES.items():
        assert english.endswith(".") and japanese.endswith("。"), code
        assert explain(code, "ja") == japanese and explain(code, "en") == english
    assert explain("no_such_code") == MESSAGES["server_error"][0]


def test_key_rotation_publishes_before_signing_and_keeps_the_old_key_until_its_tokens_expire(redis_client):
    config = IdpConfig(secret=secrets.token_bytes(32))
    keys = SigningKeys(redis_client, config)
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    keys.ensure(start)
    old = keys.current("RS256", start)
    new = keys.rotate("RS256", start)
    published = {k["kid"] for k in keys.jwks(start)["keys"]}
    assert {old.kid, new.kid} <= published  # published at once …
    assert keys.current("RS256", start).kid == old.kid  # … but not signing yet
    switch = start + config.key_rotation_overlap
    assert keys.current("RS256", switch).kid == new.kid
    still = switch + config.id_token_ttl - dt.timedelta(seconds=1)
    assert old.kid in {k["kid"] for k in keys.jwks(still)["keys"]}
    gone = switch + max(config.id_token_ttl, config.access_token_ttl)
    assert old.kid not in {k["kid"] for k in keys.jwks(gone)["keys"]}
    assert keys.prune(gone) == 1
    assert len({k.kid for k in keys.all()}) == len(keys.all())
    assert all("d" not in k for k in keys.jwks(start)["keys"])
    raw = b"".join(redis_client.hvals("idp:signing-keys"))
    assert old.private_jwk["d"].encode() not in raw  # private halves are encrypted at rest


def test_clients_cli_adds_lists_and_removes(redis_server, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "MYKEY_VAR": str(tmp_path)}

    def idp(*args):
        return subprocess.run([sys.executable, "-m", "idp", *args], env=env, capture_output=True, text=True,
                              timeout=60, cwd=ROOT)

    added = idp("clients", "add", "--name", "CLI Shop", "--redirect-uri", "https://cli.example.jp/cb")
    assert added.returncode == 0 and "client_secret_basic" in added.stdout and "shown only now" in added.stdout
    client_id = re.search(r"client_id (rp_\S+)", added.stdout).group(1)
    assert client_id in idp("clients", "list").stdout
    bad = idp("clients", "add", "--name", "X", "--redirect-uri", "http://public.example/cb")
    assert bad.returncode == 1 and "invalid_redirect_uri" in bad.stderr
    assert idp("clients", "remove", client_id).returncode == 0
    assert idp("clients", "remove", client_id).returncode == 1


def test_the_clients_cli_says_what_it_needs_from_the_environment(tmp_path):
    from devstack.processes import free_port

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MYKEY_VAR": str(tmp_path),
           "REDIS_URL": f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"}
    env.pop("IDP_ISSUER", None)

    def idp(*args):
        return subprocess.run([sys.executable, "-m", "idp", *args], env=env, capture_output=True, text=True,
                              timeout=60, cwd=ROOT)

    for command in ([], ["clients"], ["clients", "add"]):
        helped = idp(*command, "--help")
        assert helped.returncode == 0
        assert all(name in helped.stdout for name in ("REDIS_URL", "IDP_ISSUER", "MYKEY_VAR")), command
    assert "IDP_FETCH_CA_FILE" in idp("clients", "add", "--help").stdout
    for command in (["clients", "add", "--name", "Shop", "--redirect-uri", "https://shop.example.jp/cb"],
                    ["clients", "list"], ["keys", "rotate"]):
        failed = idp(*command)
        assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and "REDIS_URL" in lines[0] and f"127.0.0.1:{env['REDIS_URL'].rsplit(':', 1)[1][:-2]}" \
            in lines[0]
        assert "hunter2secret" not in failed.stderr
    env["IDP_FETCH_CA_FILE"] = str(tmp_path / "no-such-ca.pem")
    missing_ca = idp("clients", "add", "--name", "Shop", "--redirect-uri", "https://shop.example.jp/cb")
    assert missing_ca.returncode == 1 and "IDP_FETCH_CA_FILE" in missing_ca.stderr
    assert "Traceback" not in missing_ca.stderr


def test_the_clients_cli_names_the_issuer_it_prints_and_where_it_came_from(redis_server, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "MYKEY_VAR": str(tmp_path)}
    env.pop("IDP_ISSUER", None)
    command = [sys.executable, "-m", "idp", "clients", "add", "--name", "Shop", "--redirect-uri",
               "https://shop.example.jp/cb"]
    added = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert added.returncode == 0 and "IDP_ISSUER is not set" in added.stdout
    deep_jwks = tmp_path / "deep.jwks"
    deep_jwks.write_text("[" * 5000 + "]" * 5000)
    refused = subprocess.run([*command, "--jwks", str(deep_jwks)], env=env, capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
    assert refused.returncode == 1 and "invalid_client_metadata" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.fixture
def logged_in(idp_service, make_card):
    """A browser with an IdP session and a consented relying party; returns (browser, client, secret, card)."""
    card = make_card()
    idp_service.register_card(card)
    client, secret = idp_service.services.clients.add("Shop", ["https://shop.example.jp/cb"],
                                                      post_logout_redirect_uris=["https://shop.example.jp/bye"])
    browser = Browser(idp_service.url)
    url = authorize(idp_service, client)
    assert bridge_login(browser.start(url), card).returncode == 0
    final = browser.finish()
    browser.card = card  # opens the sealed access record on the account page (tests/record_flow.py)
    return browser, client, secret, final


def authorize(idp_service, client, **extra) -> str:
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uris[0],
              "scope": "openid", "state": "st", "nonce": secrets.token_urlsafe(8),
              "code_challenge": create_s256_code_challenge("v" * 50), "code_challenge_method": "S256", **extra}
    return f"{idp_service.url}/authorize?" + requests.compat.urlencode(params)


def test_max_age_forces_a_fresh_card_login(idp_service, logged_in):
    browser, client, _, _ = logged_in
    assert "code=" in browser.get(authorize(idp_service, client, max_age="3600")).headers["Location"]
    services = idp_service.services
    real_clock = services.clock
    services.clock = lambda: real_clock() + dt.timedelta(hours=2)
    try:
        again = browser.get(authorize(idp_service, client, max_age="3600"))
    finally:
        services.clock = real_clock
    assert again.headers["Location"] == "/login"
    assert query_of(browser.get(authorize(idp_service, client, max_age="-1")).headers["Location"])["error"] \
        == "invalid_request"


def test_rp_initiated_logout_ends_the_session_and_returns_only_to_registered_uris(idp_service, logged_in):
    browser, client, secret, final = logged_in
    code = query_of(final.headers["Location"])["code"]
    tokens = requests.post(f"{idp_service.url}/token", auth=(client.client_id, secret), timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uris[0],
        "code_verifier": "v" * 50}).json()
    elsewhere = browser.get(f"/logout?id_token_hint={tokens['id_token']}&post_logout_redirect_uri="
                            "https://evil.example/&state=x")
    assert elsewhere.status_code == 200 and "Location" not in elsewhere.headers
    # the session is gone: prompt=none now says login_required
    assert query_of(browser.get(authorize(idp_service, client, prompt="none")).headers["Location"])["error"] \
        == "login_required"
    back = browser.get(f"/logout?id_token_hint={tokens['id_token']}&post_logout_redirect_uri="
                       "https://shop.example.jp/bye&state=x")
    assert back.headers["Location"] == "https://shop.example.jp/bye?state=x"


def test_account_page_shows_mykey_id_consents_history_and_withdraws(idp_service, logged_in):
    browser, client, secret, final = logged_in
    code = query_of(final.headers["Location"])["code"]
    requests.post(f"{idp_service.url}/token", auth=(client.client_id, secret), timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uris[0],
        "code_verifier": "v" * 50})
    sealed = browser.get("/account?lang=en")
    assert sealed.status_code == 200 and 'id="history"' not in sealed.text  # sealed until the card opens it
    page = open_record(browser, browser.card)[0]
    mykey_id = re.search(r'id="mykey-id">([^<]+)<', page).group(1)
    assert re.fullmatch(r"[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{8}", mykey_id)
    assert "Shop" in page.split('id="consents"')[1] and "Shop" in page.split('id="history"')[1]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert browser.post(f"/account/consents/{client.client_id}/withdraw", {"csrf": "forged"}).status_code == 403
    assert browser.post(f"/account/consents/{client.client_id}/withdraw", {"csrf": csrf}).status_code == 302
    after = open_record(browser, browser.card, "ja")[0]
    assert "Shop" not in after.split('id="consents"')[1].split("</table>")[0]
    assert "マイキーID" in after
    # with consent withdrawn, the next authorization asks again
    assert 'action="/consent"' in browser.get(authorize(idp_service, client)).text
    renamed = browser.post("/account/mykey-id", {"csrf": csrf, "mykey_id": "taro-2026"})
    assert renamed.headers["Location"].endswith("mykey_id_changed")
    assert "taro-2026" in browser.get("/account").text


def test_the_login_page_shows_qr_code_command_and_check_code_in_both_languages(idp_service):
    client, _ = idp_service.services.clients.add("QR Shop", ["https://qr.example.jp/cb"])
    browser = Browser(idp_service.url)
    browser.start(authorize(idp_service, client))
    english = browser.get("/login?lang=en").text
    japanese = browser.get("/login?lang=ja").text
    assert "<svg" in english and "python -m nfc_bridge login" in english and "Log in to QR Shop" in english
    assert "QR Shop にログイン" in japanese and re.search(r'id="short-code">\d{4}<', japanese)
    state = browser.get("/login/status").json()
    assert state == {"state": "waiting"}


def test_the_idp_pages_are_not_cached_or_framed(idp_service):
    response = requests.get(f"{idp_service.url}/.well-known/openid-configuration", timeout=10)
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(f"{idp_service.url}/nothing", timeout=10).json()["error"] == "not_found"
    big = requests.post(f"{idp_service.url}/token", data="x" * 100_000, timeout=10,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413


def test_jwks_keys_verify_issued_id_tokens(idp_service, logged_in):
    _, client, secret, final = logged_in
    code = query_of(final.headers["Location"])["code"]
    tokens = requests.post(f"{idp_service.url}/token", auth=(client.client_id, secret), timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uris[0],
        "code_verifier": "v" * 50}).json()
    jwks = requests.get(f"{idp_service.url}/jwks", timeout=10).json()
    token = jwt.decode(tokens["id_token"], KeySet.import_key_set(jwks))
    assert token.header["kid"] in {k["kid"] for k in jwks["keys"]} and token.header["alg"] == "RS256"


def test_metrics_count_logins_by_result_in_prometheus_format(idp_service, logged_in):
    text = requests.get(f"{idp_service.url}/metrics", timeout=10).text
    assert '# TYPE mykey_logins_total counter' in text and 'mykey_logins_total{result="ok",token_type="card"}' in text
    revocation = requests.get(f"{idp_service.revocation.url}/metrics", timeout=10).text
    assert 'mykey_ocsp_responses_total{status="good"}' in revocation
    assert "mykey_event_stream_lag" in revocation and "mykey_event_stream_pending" in revocation

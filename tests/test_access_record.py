"""The access record only the holder's card opens (mykey/record.py, idp/holder/history.py, nfc_bridge/history.py),
and consents as a keyed lookup (mykey/consent.py): on the real Redis, the real IdP over HTTP, the real bridge with
virtual cards from the dev CA, and an operator's dump of every key."""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from jpki import parse_certificate
from jpki.profile import CertificateKind
from jpki.signature import HISTORY_LABEL, history_message, is_history_bait, login_message
from mykey import keys
from mykey.consent import ConsentStore
from mykey.record import PAD_TO, AccessRecord, RecordKeyMismatch, holder_key
from nfc_bridge.virtual_card import VirtualCard
from revocation.domain.events import parse_event
from tests.idp_flow import Browser, bridge_login, handle_url_of
from tests.record_flow import account_browser, bridge_history, open_record
from tests.test_idp_privacy import login, register, stored_values
from tests.test_operator_console import log_in

NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
SECRET = secrets.token_bytes(32)


# --- the parts, on the real Redis -------------------------------------------------------------------------------


def test_entries_are_sealed_to_the_holders_key_and_open_only_with_it(redis_client):
    record = AccessRecord(redis_client, SECRET)
    account, cert = secrets.token_hex(16), "cert-a"
    key = holder_key(secrets.token_bytes(256))
    record.open(account, key, cert, dt.date(2026, 1, 1), NOW)  # sets the key up
    record.record(account, cert, "rp_shop", ["openid"], NOW, token_type="card")
    record.record(account, cert, "rp_bank_with_a_much_longer_client_identifier", ["openid", "name"],
                  NOW + dt.timedelta(minutes=1), token_type="smartphone")

    blobs = redis_client.lrange(keys.record(account), 0, -1)
    assert len({len(blob) for blob in blobs}) == 1  # padded: the length does not tell the relying parties apart
    assert all(b"rp_" not in blob for blob in blobs)
    opened = record.open(account, key, cert, dt.date(2026, 1, 1), NOW)
    assert [(r.client_id, r.claims, r.token_type) for r in opened.releases] == [
        ("rp_bank_with_a_much_longer_client_identifier", ("openid", "name"), "smartphone"),
        ("rp_shop", ("openid",), "card")]
    with pytest.raises(RecordKeyMismatch):  # another key for the same certificate changes nothing
        record.open(account, X25519PrivateKey.generate(), cert, dt.date(2026, 1, 1), NOW)
    assert redis_client.llen(keys.record(account)) == 2
    assert PAD_TO >= 256


def test_what_the_holder_signed_is_sealed_in_the_release_entry_pending_first_then_under_their_key(redis_client):
    record = AccessRecord(redis_client, SECRET)
    account, key = secrets.token_hex(16), holder_key(secrets.token_bytes(256))
    signed = [("売買契約書", "89B4 E79D CCCE 7FCE"), ("Privacy notice", "0A1B 2C3D 4E5F 6071")]
    record.record(account, "cert", "rp_shop", ["openid"], NOW, token_type="card", documents=signed)
    pending = redis_client.lrange(keys.record_pending(account), 0, -1)  # no key yet: waiting, not in clear
    assert len(pending) == 1 and not any(label.encode() in pending[0] for label, _ in signed)
    record.open(account, key, "cert", dt.date(2026, 1, 1), NOW)
    record.record(account, "cert", "rp_bank", ["openid"], NOW + dt.timedelta(minutes=1))  # a plain login
    blobs = redis_client.lrange(keys.record(account), 0, -1)
    assert not any(fp.encode() in blob or label.encode() in blob for label, fp in signed for blob in blobs)
    opened = record.open(account, key, "cert", dt.date(2026, 1, 1), NOW)
    assert [(r.client_id, r.documents) for r in opened.releases] == [("rp_bank", ()), ("rp_shop", tuple(signed))]
    for bad in ([("x", "y")] * 11, [("", "89B4")], [("a" * 101, "89B4")], [(1, "89B4")]):
        with pytest.raises(ValueError):
            record.record(account, "cert", "rp_shop", ["openid"], NOW, documents=bad)
    assert redis_client.llen(keys.record(account)) == 2  # a refused entry writes nothing


def test_an_entry_moved_to_another_holder_does_not_open(redis_client):
    record = AccessRecord(redis_client, SECRET)
    key = holder_key(secrets.token_bytes(256))
    alice, bob = secrets.token_hex(16), secrets.token_hex(16)
    for account in (alice, bob):  # the same key on both, to isolate the binding of entries to their list
        record.open(account, key, "cert", dt.date(2026, 1, 1), NOW)
    record.record(alice, "cert", "rp_shop", ["openid"], NOW)
    redis_client.lpush(keys.record(bob), redis_client.lindex(keys.record(alice), 0))
    assert record.open(bob, key, "cert", dt.date(2026, 1, 1), NOW).releases == []


def test_before_the_first_opening_entries_wait_sealed_with_the_platform_key_then_move(redis_client):
    record = AccessRecord(redis_client, SECRET)
    account = secrets.token_hex(16)
    record.record(account, "cert", "rp_shop", ["openid"], NOW)
    record.note_consent(account, "cert", "rp_shop", ["openid"], NOW)
    counts = record.counts(account)
    assert (counts.sealed, counts.pending, counts.has_key) == (0, 2, False)
    expires = redis_client.expiretime(keys.record_pending(account))  # a UTC midnight 30 to 31 days on: no time
    assert expires % 86400 == 0 and 30 * 86400 <= expires - NOW.timestamp() <= 31 * 86400
    key = holder_key(secrets.token_bytes(256))
    opened = record.open(account, key, "cert", dt.date(2026, 1, 1), NOW)
    assert [r.client_id for r in opened.releases] == ["rp_shop"] and opened.consents[0].client_id == "rp_shop"
    assert not redis_client.exists(keys.record_pending(account))
    assert record.counts(account).sealed == 2


def test_entries_past_their_retention_are_dropped_when_the_record_is_opened(redis_client):
    record = AccessRecord(redis_client, SECRET)
    account, key = secrets.token_hex(16), holder_key(secrets.token_bytes(256))
    record.open(account, key, "cert", dt.date(2026, 1, 1), NOW)
    record.record(account, "cert", "rp_old", ["openid"], NOW - dt.timedelta(days=401))
    record.record(account, "cert", "rp_new", ["openid"], NOW)
    redis_client.lpush(keys.record(account), b"an entry this key does not open")  # skipped, and counted in place
    assert [r.client_id for r in record.open(account, key, "cert", dt.date(2026, 1, 1), NOW).releases] == ["rp_new"]
    assert redis_client.llen(keys.record(account)) == 2  # the old entry trimmed, the newer two kept
    expires = dt.datetime.fromtimestamp(redis_client.expiretime(keys.record(account)), dt.UTC)
    assert expires.day == 1 and expires.hour == 0 and 400 <= (expires - NOW).days <= 431  # the month, not the day


def test_consents_are_a_keyed_lookup_with_no_per_holder_list(redis_client):
    consents = ConsentStore(redis_client, SECRET)
    account = secrets.token_hex(16)
    consents.grant(account, "rp_shop", ["openid"], NOW)
    consents.grant(account, "rp_shop", ["name"], NOW)
    assert consents.get(account, "rp_shop").scopes == ("name", "openid")
    assert consents.get(account, "rp_bank") is None and consents.get(secrets.token_hex(16), "rp_shop") is None
    assert ConsentStore(redis_client, secrets.token_bytes(32)).get(account, "rp_shop") is None  # keyed
    assert [c.client_id for c in consents.get_many(account, ["rp_bank", "rp_shop"])] == ["rp_shop"]
    found = [key for key in redis_client.scan_iter(match=b"mk:consent:*", count=1000)
             if redis_client.get(key) == b"1 name openid"]
    assert len(found) == 1 and account.encode() not in found[0] and b"rp_shop" not in found[0]
    expires = dt.datetime.fromtimestamp(redis_client.expiretime(found[0]), dt.UTC)
    assert expires.day == 1 and expires.hour == 0 and 400 <= (expires - NOW).days <= 431  # the month, not the day
    assert consents.withdraw(account, "rp_shop") and consents.get(account, "rp_shop") is None


def test_a_login_can_never_ask_for_the_history_signature():
    origin = "https://mykey.example.jp"
    assert len(history_message(origin)) != len(login_message(origin, b"x"))
    assert is_history_bait(origin, HISTORY_LABEL) and is_history_bait(origin, b"pre" + history_message(origin))
    assert not is_history_bait(origin, secrets.token_bytes(32))


# --- the flows, over HTTP with the bridge ---------------------------------------------------------------------


def test_the_holder_opens_the_record_with_the_card_once_per_view(idp_service, make_card):
    card = make_card()
    idp_service.register_card(card)
    shop = register(idp_service, "Example Shop", "https://shop.example.jp/cb")
    login(idp_service, shop, card)
    browser = account_browser(idp_service, card)
    closed = browser.get("/account?lang=en").text
    assert 'id="history"' not in closed and "Example Shop" not in closed
    assert re.search(r'id="pending-count">2<', closed)  # the release and the consent note wait for the key

    opened, run = open_record(browser, card)
    assert "NOT a login" in run.stdout and "1234" not in run.stdout + run.stderr
    history = opened[opened.index('id="history"'):]
    consents = opened[opened.index('id="consents"'):opened.index('id="history"')]
    assert "Example Shop" in history and "My Number Card" in history and "Example Shop" in consents
    again = browser.get("/account?lang=en").text  # one view: the key is gone
    assert 'id="history"' not in again and re.search(r'id="sealed-count">2<', again)
    assert not re.search(r'id="pending-count"', again)


def test_another_persons_card_opens_nothing(idp_service, make_card):
    mine, theirs = make_card(), make_card()
    for card in (mine, theirs):
        idp_service.register_card(card)
    login(idp_service, register(idp_service, "Shop", "https://shop.example.jp/cb"), theirs)
    browser = account_browser(idp_service, mine)
    page, run = open_record(browser, theirs, expect_ok=False)
    assert "history_other_card" in run.stderr and 'id="history"' not in page


def test_the_bridge_refuses_a_login_whose_challenge_is_the_history_message(idp_service, card_file):
    idp_service.register_card(card_file)
    services = idp_service.services
    browser = Browser(idp_service.url)
    browser.get("/account")  # a login starts; then a hostile server makes its challenge the history message
    txn = services.logins.get(browser.http.cookies.get("mykey-login"))
    bait = base64.urlsafe_b64encode(history_message(services.config.origin)).rstrip(b"=")
    stored = services.redis.get(services.logins._key(txn.id))
    services.redis.set(services.logins._key(txn.id), stored.replace(txn.challenge.encode(), bait), keepttl=True)
    handle = handle_url_of(browser.get("/login").text)
    run = bridge_login(handle, card_file)
    assert run.returncode == 1 and "history_signature_refused" in run.stderr
    assert "Signing" not in run.stdout  # refused before the card was asked anything


def renew(idp_service, old_card, new_card, registered: dict) -> None:
    """The dev CA's renewal: the new card's certificates replace the old ones for the same holder (新旧紐付け)."""
    old, new = VirtualCard.load(old_card), VirtualCard.load(new_card)
    renewals = []
    for kind in CertificateKind:
        before, after = parse_certificate(old.certificate(kind)), parse_certificate(new.certificate(kind))
        renewals.append({"kind": kind.value, "old_serial": f"{before.serial:X}", "new_serial": f"{after.serial:X}",
                         "not_after": after.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")})
    outcome = idp_service.revocation.services.applier.apply(parse_event({
        "event_id": f"renew-{secrets.token_hex(4)}x", "type": "certificate_renewed", "holder": registered["holder"],
        "occurred_at": "2026-06-01T00:00:00Z", "source": "test", "card_id": registered["card_id"],
        "renewals": renewals}))
    assert outcome is not None


def test_after_a_renewal_the_holder_is_told_how_many_entries_can_no_longer_be_opened(idp_service, make_card):
    old_card = make_card()
    registered = idp_service.register_card(old_card)
    shop = register(idp_service, "Example Shop", "https://shop.example.jp/cb")
    bank = register(idp_service, "Example Bank", "https://bank.example.jp/cb")
    browser = account_browser(idp_service, old_card)
    open_record(browser, old_card)  # the key of the old card is set up
    login(idp_service, shop, old_card)
    login(idp_service, shop, old_card)  # two releases and one consent note sealed to the old card's key

    new_card = make_card()
    renew(idp_service, old_card, new_card, registered)
    login(idp_service, bank, new_card)  # after the renewal, before opening: waits for the new key
    browser = account_browser(idp_service, new_card)
    page, _ = open_record(browser, new_card)
    renewed_on = parse_certificate(VirtualCard.load(new_card).certificate(CertificateKind.AUTH)).not_before.date()
    notice = re.search(r'id="renewal-notice"[^>]*>([^<]+)<', page).group(1)
    assert f"3 entries from before your certificate was renewed on {renewed_on.isoformat()}" in notice
    history = page[page.index('id="history"'):]
    assert "Example Bank" in history and "Example Shop" not in history
    consents = page[page.index('id="consents"'):page.index('id="history"')]
    assert "Example Shop" in consents and "before a renewal" in consents  # still in force, and still shown
    assert "Example Bank" in consents


# --- the operator's view: every key, without a card -------------------------------------------------------------


def test_an_operator_with_the_whole_database_cannot_tell_who_logged_in_where_or_when(idp_service, make_card,
                                                                                      redis_client):
    services = idp_service.services
    rps = [register(idp_service, name, f"https://{name.lower()}.example.jp/cb") for name in ("Shop", "Bank", "City")]
    holders = []
    started = int(time.time())
    for index in range(3):
        card = make_card()
        idp_service.register_card(card)
        if index < 2:  # two holders have opened their record once; the third never has (entries wait)
            open_record(account_browser(idp_service, card), card)
        subs = [login(idp_service, rp, card)[0]["sub"] for rp in rps[index:] + rps[:index][:1]]
        holders.append((card, subs))
    finished = int(time.time())

    accounts = {key.split(b"{a:")[1].rstrip(b"}") for key in redis_client.scan_iter(match=b"mk:acct:*")}
    client_ids = [rp[0].client_id.encode() for rp in rps]
    subs = [sub.encode() for _, holder_subs in holders for sub in holder_subs]
    login_times = [form for second in range(started - 1, finished + 2)
                   for form in (str(second).encode(),
                                dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S").encode())]
    stored = stored_values(redis_client)
    ttl = {key: redis_client.ttl(key) for key in stored}
    short = int(services.config.refresh_token_ttl.total_seconds())

    lasting = {key: blobs for key, blobs in stored.items() if ttl[key] == -1 or ttl[key] > short}
    for key in lasting:  # a lasting key's expiry is a UTC midnight (a month's or a day's), so it dates no login
        expires = redis_client.expiretime(key)
        assert expires == -1 or expires % 86400 == 0 or key.startswith(b"rv:") or key == b"idp:signing-keys", key
    for key, blobs in lasting.items():
        text = [key, *blobs]
        if key == b"idp:clients":  # the registry of relying parties: no holder in it
            assert not any(a in blob for a in accounts for blob in text)
            continue
        for blob in text:
            assert not any(c in blob for c in client_ids), key  # no relying party next to anything else
            assert not any(s in blob for s in subs), key
            if not key.startswith(b"rv:"):  # (the revocation service's OCSP cache: see docs/security-and-privacy.md)
                assert not any(t in blob for t in login_times), key
    # What does name a holder and a relying party together lives no longer than a refresh token, and says so.
    for key, blobs in stored.items():
        if key not in lasting and any(c in blob for c in client_ids for blob in blobs):
            assert 0 < ttl[key] <= short, key
    assert len(accounts) >= 3 and any(key.startswith(b"mk:rec:") for key in lasting)
    assert any(key.startswith(b"mk:consent:") for key in lasting)

    # The operator console shows counts only: entries written, by what they are sealed to.
    _, console = log_in(idp_service.url, idp_service.revocation.services.operators.add("oscar"))
    counts = re.search(r'id="record-counts">(.*?)</p>', console.text, re.S).group(1)
    assert re.search(r"<strong>\d+</strong> sealed to the holder's card", counts)
    assert not any(sub.decode() in console.text for sub in subs) and not any(a.decode() in console.text
                                                                            for a in accounts)

    # With the card, the holder sees all of it.
    card, _ = holders[0]
    page, _ = open_record(account_browser(idp_service, card), card)
    history = page[page.index('id="history"'):]
    assert all(name in history for name in ("Shop", "Bank", "City"))


def test_a_browser_opening_the_history_link_spends_nothing(idp_service, make_card):
    card = make_card()
    idp_service.register_card(card)
    browser = account_browser(idp_service, card)
    page = browser.get("/account?lang=en").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    browser.post("/account/history/open", {"csrf": csrf})
    url = re.search(r"(http://\S+/api/history/[A-Za-z0-9_-]+)", browser.get("/account/history").text).group(1)
    seen = requests.get(url, headers={"Accept": "text/html,application/xhtml+xml"}, timeout=10)
    assert seen.status_code == 406 and "history_link_in_browser" in seen.text and "submit_token" not in seen.text
    run = bridge_history(url, card)  # the link still works for the bridge
    assert run.returncode == 0, run.stderr
    assert 'id="history"' in browser.get("/account?lang=en").text


def test_a_wrong_pin_opens_nothing_and_says_nothing_was_sent(idp_service, make_card):
    card = make_card()
    idp_service.register_card(card)
    browser = account_browser(idp_service, card)
    page = browser.get("/account?lang=en").text
    browser.post("/account/history/open", {"csrf": re.search(r'name="csrf" value="([^"]+)"', page).group(1)})
    url = re.search(r"(http://\S+/api/history/[A-Za-z0-9_-]+)", browser.get("/account/history").text).group(1)
    run = bridge_history(url, card, pins="9999\n")
    assert run.returncode == 1 and "wrong_pin" in run.stderr and "Nothing was sent." in run.stderr
    assert "9999" not in run.stdout + run.stderr
    assert browser.get("/account/history/status").json()["state"] == "fetched"
    assert 'id="history"' not in browser.get("/account?lang=en").text


def test_an_entry_sealed_to_a_key_replaced_meanwhile_waits_instead_of_being_lost(redis_client, monkeypatch):
    record = AccessRecord(redis_client, SECRET)
    account = secrets.token_hex(16)
    old_key, new_key = holder_key(secrets.token_bytes(256)), holder_key(secrets.token_bytes(256))
    record.open(account, old_key, "old-cert", dt.date(2026, 1, 1), NOW)
    stale = redis_client.hmget(keys.record_key(account), "pub", "cert")  # what a login read just before ...
    record.open(account, new_key, "new-cert", dt.date(2026, 6, 1), NOW)  # ... the renewed card opened the record
    monkeypatch.setattr(record.redis, "hmget", lambda *_args: stale)
    record.record(account, "old-cert", "rp_shop", ["openid"], NOW)  # sealed to the old key: refused in Redis
    monkeypatch.undo()
    assert redis_client.llen(keys.record_pending(account)) == 1
    opened = record.open(account, new_key, "new-cert", dt.date(2026, 6, 1), NOW)
    assert [r.client_id for r in opened.releases] == ["rp_shop"]


def test_the_plain_records_of_earlier_versions_are_purged_by_the_cli(redis_server, redis_client, tmp_path,
                                                                       monkeypatch, capsys):
    from idp.cli import main

    account = secrets.token_hex(16)
    redis_client.hset(f"mk:consent:{{a:{account}}}", "rp_shop", "1767225600 openid")  # as earlier versions kept them
    redis_client.lpush(f"mk:log:{{a:{account}}}", '{"client_id":"rp_shop","claims":["openid"],"at":1767225600}')
    ConsentStore(redis_client, SECRET).grant(account, "rp_shop", ["openid"], NOW)  # today's: kept
    for name, value in {"REDIS_URL": redis_server.url, "MYKEY_DEV": "1", "MYKEY_VAR": str(tmp_path),
                        "IDP_ISSUER": "http://127.0.0.1:1"}.items():
        monkeypatch.setenv(name, value)
    assert main(["records", "purge-plain"]) == 0
    assert "Deleted 2 plain" in capsys.readouterr().out
    assert not redis_client.exists(f"mk:consent:{{a:{account}}}", f"mk:log:{{a:{account}}}")
    assert ConsentStore(redis_client, SECRET).get(account, "rp_shop") is not None


def test_looking_at_the_account_page_while_the_card_is_awaited_keeps_the_opening(idp_service, make_card):
    card = make_card()
    idp_service.register_card(card)
    browser = account_browser(idp_service, card)
    page = browser.get("/account?lang=en").text
    browser.post("/account/history/open", {"csrf": re.search(r'name="csrf" value="([^"]+)"', page).group(1)})
    url = re.search(r"(http://\S+/api/history/[A-Za-z0-9_-]+)", browser.get("/account/history").text).group(1)
    assert 'id="history"' not in browser.get("/account?lang=en").text  # not opened yet, and not given up either
    assert bridge_history(url, card).returncode == 0
    assert 'id="history"' in browser.get("/account?lang=en").text

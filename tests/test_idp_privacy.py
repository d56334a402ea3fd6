"""Privacy as behaviour: pairwise subjects, renewal continuity, the four facts only when signed for, nothing
sensitive in what relying parties or logs see."""

from __future__ import annotations

import json
import secrets

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from jpki import parse_certificate
from jpki.devca import new_rsa_key
from jpki.profile import CertificateKind
from nfc_bridge.card_file import Holder, write_card_file
from nfc_bridge.virtual_card import VirtualCard
from revocation.domain.events import parse_event
from tests.idp_flow import Browser, bridge_login, query_of
from tests.record_flow import read_record


def register(idp_service, name: str, redirect: str):
    client, secret = idp_service.services.clients.add(name, [redirect])
    return client, secret, redirect


def login(idp_service, rp, card, scope: str = "openid", pins: str = "1234\n") -> tuple[dict, dict]:
    client, secret, redirect = rp
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": redirect, "scope": scope,
              "state": "s", "nonce": nonce, "code_challenge": create_s256_code_challenge(verifier),
              "code_challenge_method": "S256"}
    browser = Browser(idp_service.url)
    handle = browser.start(f"{idp_service.url}/authorize?" + requests.compat.urlencode(params))
    result = bridge_login(handle, card, pins)
    assert result.returncode == 0, result.stderr
    final = browser.finish()
    code = query_of(final.headers["Location"])["code"]
    tokens = requests.post(f"{idp_service.url}/token", auth=(client.client_id, secret), timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "code_verifier": verifier}).json()
    jwks = KeySet.import_key_set(requests.get(f"{idp_service.url}/jwks", timeout=10).json())
    claims = jwt.decode(tokens["id_token"], jwks).claims
    assert claims["nonce"] == nonce
    return claims, tokens


@pytest.fixture
def card(make_card, idp_service):
    path = make_card()
    registered = idp_service.register_card(path)
    return path, registered


def serials_of(path) -> dict[CertificateKind, int]:
    card = VirtualCard.load(path)
    return {kind: parse_certificate(card.certificate(kind)).serial for kind in CertificateKind}


def stored_values(client) -> dict[bytes, list[bytes]]:
    """Every key in the database with everything stored under it, as bytes: the key itself, string values, hash
    fields and values, list, set and sorted-set members (with their scores), and stream entry ids, fields and
    values. A key of any other type fails the scan: a scan that skipped it would see nothing there."""
    stored: dict[bytes, list[bytes]] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key)]
        elif kind == b"hash":
            values = [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [item for member, score in client.zrange(key, 0, -1, withscores=True)
                      for item in (member, repr(score).encode())]
        elif kind == b"stream":
            values = [item for entry_id, fields in client.xrange(key)
                      for item in (entry_id, *(part for pair in fields.items() for part in pair))]
        else:
            raise AssertionError(f"the privacy scan cannot read a Redis {kind!r} value ({key!r})")
        stored[key] = [key, *(value or b"" for value in values)]
    return stored


# What one completed login leaves in Redis outside the revocation service: the places where a serial or a fact
# would land if it leaked. A scan that did not find all of them scanned the wrong database, or too early.
LOGIN_KEYS = (b"idp:session:", b"idp:token:", b"mk:sn:", b"mk:acct:", b"mk:consent:", b"mk:rpend:")  # the access
# record waits in `mk:rpend:` until its holder first opens it with the card (mykey/record.py)


def assert_scanned_the_login(stored: dict[bytes, list[bytes]]) -> None:
    missing = [prefix for prefix in LOGIN_KEYS if not any(key.startswith(prefix) for key in stored)]
    assert not missing, f"the scan found none of these keys a login writes: {missing}"
    assert sum(len(blobs) for blobs in stored.values()) >= 2 * len(stored)  # every key came with its values


def test_the_store_scan_reads_every_kind_of_value_and_misses_nothing_a_login_writes(redis_client):
    redis_client.set("t:string", "marker-string")
    redis_client.hset("t:hash", "marker-field", "marker-value")
    redis_client.rpush("t:list", "x", "marker-list")
    redis_client.sadd("t:set", "marker-set")
    redis_client.zadd("t:zset", {"marker-zset": 1})
    redis_client.xadd("t:stream", {"marker-stream-field": "marker-stream-value"})
    stored = stored_values(redis_client)
    for key, marker in [(b"t:string", b"marker-string"), (b"t:hash", b"marker-field"), (b"t:hash", b"marker-value"),
                        (b"t:list", b"marker-list"), (b"t:set", b"marker-set"), (b"t:zset", b"marker-zset"),
                        (b"t:stream", b"marker-stream-field"), (b"t:stream", b"marker-stream-value")]:
        assert marker in stored[key], (key, marker)
    with pytest.raises(AssertionError, match="the scan found none"):
        assert_scanned_the_login(stored)  # nothing a login writes is there


def test_two_sectors_get_unlinkable_subjects_and_one_sector_a_stable_one(idp_service, card):
    shop = register(idp_service, "Shop", "https://shop.example.jp/cb")
    shop_again = register(idp_service, "Shop (second app)", "https://shop.example.jp/other")
    bank = register(idp_service, "Bank", "https://bank.example.com/cb")
    at_shop, _ = login(idp_service, shop, card[0])
    at_shop_again, _ = login(idp_service, shop_again, card[0])
    at_bank, _ = login(idp_service, bank, card[0])
    assert at_shop["sub"] == at_shop_again["sub"]  # same sector (host): same subject
    assert at_shop["sub"] != at_bank["sub"]
    mykey_id = idp_service.services.mykey.get(_account(idp_service, card[0])).mykey_id
    serial = serials_of(card[0])[CertificateKind.AUTH]
    for claims in (at_shop, at_bank):
        text = json.dumps(claims)
        assert mykey_id not in text and f"{serial:X}" not in text.upper() and str(serial) not in text


def _account(idp_service, path) -> str:
    serial = serials_of(path)[CertificateKind.AUTH]
    return idp_service.services.mykey.resolve("auth", serial, idp_service.services.clock()).account_id


def test_a_renewed_card_keeps_the_same_subject_at_every_rp(idp_service, card, dev_ca, tmp_path):
    path, registered = card
    shop = register(idp_service, "Shop", "https://shop.example.jp/cb")
    before, _ = login(idp_service, shop, path)
    old = serials_of(path)
    # Renewal (更新): the card gets new keys and certificates; the register links old → new.
    state = json.loads(path.read_text())
    renewed_path = tmp_path / "renewed.json"
    auth_key, sign_key = new_rsa_key(), new_rsa_key()
    from cryptography.hazmat.primitives import serialization

    holder_birthdate = parse_certificate(bytes.fromhex(state["files"]["0001"])).four_facts.birthdate
    auth = dev_ca.issue_auth(auth_key.public_key(), holder_birthdate)
    der = lambda cert: cert.public_bytes(serialization.Encoding.DER).hex()  # noqa: E731
    pem = lambda key: key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # noqa: E731
                                        serialization.NoEncryption()).decode()
    state["files"]["000A"] = der(auth)
    state["keys"]["auth"] = pem(auth_key)
    write_card_file(renewed_path, state)
    outcome = idp_service.revocation.services.applier.apply(parse_event({
        "event_id": "renew-e2e-x1", "type": "certificate_renewed", "holder": registered["holder"],
        "occurred_at": "2026-06-01T00:00:00Z", "source": "test", "card_id": registered["card_id"],
        "renewals": [{"kind": "auth", "old_serial": f"{old[CertificateKind.AUTH]:X}",
                      "new_serial": f"{auth.serial_number:X}", "not_after": auth.not_valid_after_utc.isoformat()}]}))
    assert outcome.changes == {"registered": 1, "revoked": 1}
    after, _ = login(idp_service, shop, renewed_path)
    assert after["sub"] == before["sub"]
    assert sign_key  # the signing certificate was not renewed in this event


def test_the_four_facts_need_the_signing_pin_and_only_asked_ones_are_released(idp_service, card):
    rp = register(idp_service, "Bank", "https://bank.example.com/cb")
    claims, tokens = login(idp_service, rp, card[0], scope="openid name birthdate", pins="1234\nABC123\n")
    assert claims["name"] == "デジタル 太郎" and claims["birthdate"] == "1990-01-02"
    assert "address" not in claims and "gender" not in claims
    info = requests.get(f"{idp_service.url}/userinfo", timeout=10,
                        headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert info["name"] == "デジタル 太郎" and "address" not in info
    plain, _ = login(idp_service, rp, card[0], scope="openid")
    assert "name" not in plain and plain["sub"] == claims["sub"]


def test_the_four_facts_are_asked_for_each_time_and_never_stored_in_clear(idp_service, card, redis_client):
    rp = register(idp_service, "Bank", "https://bank.example.com/cb")
    login(idp_service, rp, card[0], scope="openid name address", pins="1234\nABC123\n")
    holder = Holder()
    forms = [form for fact in (holder.name, holder.address, holder.name.split()[0], "千代田区")
             for form in (fact.encode(), json.dumps(fact).strip('"').encode())]  # UTF-8 and JSON's ASCII escapes
    stored = stored_values(redis_client)
    assert_scanned_the_login(stored)
    for key, blobs in stored.items():
        for blob in blobs:
            assert not any(form in blob for form in forms), key


def test_the_access_record_lists_each_release(idp_service, card):
    rp = register(idp_service, "Bank", "https://bank.example.com/cb")
    login(idp_service, rp, card[0], scope="openid name", pins="1234\nABC123\n")
    entries = read_record(idp_service, card[0]).releases
    assert entries[0].client_id == rp[0].client_id and set(entries[0].claims) == {"openid", "name"}


def test_the_bridge_never_prints_the_pin_or_serial(idp_service, card):
    rp = register(idp_service, "Shop", "https://shop.example.jp/cb")
    client, _, redirect = rp
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": redirect, "scope": "openid",
              "state": "s", "nonce": "n", "code_challenge": create_s256_code_challenge("v" * 50),
              "code_challenge_method": "S256"}
    browser = Browser(idp_service.url)
    handle = browser.start(f"{idp_service.url}/authorize?" + requests.compat.urlencode(params))
    result = bridge_login(handle, card[0], "1234\n")
    output = result.stdout + result.stderr
    serial = serials_of(card[0])[CertificateKind.AUTH]
    assert "1234" not in output.replace("12345", "") and f"{serial:X}" not in output
    for step in ("Waiting for the card", "Reading the certificate", "Signing with the card", "Sending the signature"):
        assert step in output


def test_outside_the_revocation_service_no_serial_is_stored_in_clear(idp_service, card, redis_client):
    rp = register(idp_service, "Shop", "https://shop.example.jp/cb")
    login(idp_service, rp, card[0])
    forms = []
    for serial in serials_of(card[0]).values():
        forms += [f"{serial:X}".encode(), f"{serial:x}".encode(), str(serial).encode(),
                  serial.to_bytes((serial.bit_length() + 7) // 8, "big")]
    stored = stored_values(redis_client)
    assert_scanned_the_login(stored)
    for key, blobs in stored.items():
        if key.startswith(b"rv:"):  # the revocation service keeps serials: OCSP and CRLs need them
            continue
        for blob in blobs:
            assert not any(form in blob for form in forms), key

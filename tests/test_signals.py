"""Signals to relying parties (idp/signals/): the status feed, SSF stream management and its authorization, the
claims and signatures of every token, the no-reason-leaks rule, delivery across a receiver's outage and a
worker's restart, poll delivery, back-channel logout. Real Redis, the real revocation service and IdP over HTTP,
the virtual card, Authlib as the relying party's client library and joserfc to verify tokens."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.signals import tokens as set_tokens
from jpki import parse_certificate
from jpki.profile import CertificateKind, crl_shard
from nfc_bridge.virtual_card import VirtualCard
from tests.idp_flow import Browser, bridge_login
from tests.signals_flow import Receiver, WorkerThread, card_event, holder_event, ssf_token, worker_process
from wire import status_feed

REDIRECT = "https://shop.example.jp/callback"
OTHER_REDIRECT = "https://other.example.jp/callback"
PUSH, POLL = "urn:ietf:rfc:8935", "urn:ietf:rfc:8936"
ALLOWED_SET_CLAIMS = {"iss", "aud", "iat", "jti", "sub_id", "events"}
ALLOWED_EVENT_MEMBERS = {"event_timestamp", "initiating_entity", "credential_type", "change_type"}


@pytest.fixture
def signals(idp_service):
    """The signals parts of the live IdP (the worker threads below share them)."""
    from idp.signals.service import EXTENSION

    return idp_service.server.app.extensions[EXTENSION]


@pytest.fixture
def receiver():
    with Receiver() as live:
        yield live


def register(idp_service, receiver=None, redirect=REDIRECT, name="Example Shop"):
    client, secret = idp_service.services.clients.add(
        name, [redirect], backchannel_logout_uri=f"{receiver.url}/bcl/{name.split()[0].lower()}" if receiver else None)
    return client, secret


def login(idp_service, client, secret, card, redirect=REDIRECT) -> dict:
    """The code flow with Authlib and the virtual card; the ID token's claims."""
    session = OAuth2Session(client.client_id, secret, scope="openid", redirect_uri=redirect,
                            token_endpoint_auth_method="client_secret_basic", code_challenge_method="S256")
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    url, _ = session.create_authorization_url(f"{idp_service.url}/authorize", code_verifier=verifier, nonce=nonce)
    browser = Browser(idp_service.url)
    result = bridge_login(browser.start(url), card)
    assert result.returncode == 0, result.stderr
    final = browser.finish()
    assert final.status_code == 302, final.text
    token = session.fetch_token(f"{idp_service.url}/token", authorization_response=final.headers["Location"],
                                code_verifier=verifier)
    claims = verify(idp_service, token["id_token"], "JWT", client.client_id)
    return {"claims": claims, "browser": browser, "id_token": token["id_token"]}


def verify(idp_service, token: str, typ: str, audience: str) -> dict:
    """Signature by the IdP's JWKS (by kid), typ, iss and aud: what a receiver checks."""
    jwks = KeySet.import_key_set(requests.get(f"{idp_service.url}/jwks", timeout=10).json())
    decoded = jwt.decode(token, jwks, algorithms=["RS256", "ES256"])
    assert decoded.header["typ"] == typ and decoded.header["kid"]
    assert decoded.claims["iss"] == idp_service.url
    aud = decoded.claims["aud"]
    assert aud == audience or aud == [audience]
    return decoded.claims


def create_stream(idp_service, client, secret, delivery: dict, **extra) -> tuple[str, dict]:
    token = ssf_token(idp_service.url, client.client_id, secret)
    answer = requests.post(f"{idp_service.url}/ssf/streams", json={"delivery": delivery, **extra},
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 201, answer.text
    return token, answer.json()


def events_of(claims: dict) -> dict:
    assert set(claims) <= ALLOWED_SET_CLAIMS, claims
    for event in claims["events"].values():
        assert set(event) <= ALLOWED_EVENT_MEMBERS, event
    return claims["events"]


# --- the feed ----------------------------------------------------------------------------------------------------

def feed_entries(redis_client, serial: int) -> list[dict]:
    entries = redis_client.xrange(status_feed.feed_key("auth", crl_shard(serial)))
    mine = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
    return [e for e in mine if e["s"] == f"{serial:X}"]


def test_every_status_change_is_in_the_feed_in_order(revocation_services, redis_client, issue_card):
    card = issue_card()
    serial = card["auth"].serial_number
    apply = revocation_services.applier.apply
    apply(card_event("card_lost", card["holder"], card["card_id"], "e-lost", "2026-02-01T00:00:00Z"))
    apply(card_event("card_found", card["holder"], card["card_id"], "e-found", "2026-02-02T00:00:00Z"))
    apply(card_event("card_lost", card["holder"], card["card_id"], "e-lost", "2026-02-01T00:00:00Z"))  # again
    apply(holder_event("died", card["holder"], "e-died", "2026-03-01T00:00:00Z"))
    states = [e["e"] for e in feed_entries(redis_client, serial)]
    # registered, held, released, (the repeated event completes its steps again: at least once), revoked
    assert states[:3] == ["good", "held", "good"] and states[-1] == "revoked", states
    assert set(states[3:-1]) <= {"good"}
    revoked = feed_entries(redis_client, serial)[-1]
    assert set(revoked) == {"s", "e", "r"}  # the CRL reason code only; the IdP maps it away


def test_a_renewal_names_the_certificate_it_replaced(revocation_services, redis_client, issue_card, dev_ca):
    from jpki.devca import new_rsa_key
    from revocation.domain.events import parse_event

    card = issue_card()
    old = card["auth"].serial_number
    new = dev_ca.issue_auth(new_rsa_key().public_key(), dt.date(1990, 1, 2))
    revocation_services.applier.apply(parse_event({
        "event_id": "renew-1", "type": "certificate_renewed", "holder": card["holder"], "card_id": card["card_id"],
        "occurred_at": "2026-04-01T00:00:00Z", "source": "test",
        "renewals": [{"kind": "auth", "old_serial": f"{old:X}", "new_serial": f"{new.serial_number:X}",
                      "not_after": new.not_valid_after_utc.isoformat().replace("+00:00", "Z")}]}))
    [registered] = feed_entries(redis_client, new.serial_number)
    assert registered == {"s": f"{new.serial_number:X}", "e": "good", "p": f"{old:X}"}
    assert feed_entries(redis_client, old)[-1]["e"] == "revoked"


def test_an_operators_manual_hold_is_in_the_feed(revocation_services, redis_client, issue_card):
    from revocation.operations.actions import manual_action

    card = issue_card()
    serial = card["auth"].serial_number
    manual_action(revocation_services, "op", "auth", f"{serial:X}", "hold", "reported by phone")
    assert feed_entries(redis_client, serial)[-1]["e"] == "held"


# --- stream management and its authorization ------------------------------------------------------------------

def test_transmitter_metadata_and_discovery(idp_service):
    metadata = requests.get(f"{idp_service.url}/.well-known/ssf-configuration", timeout=10).json()
    assert metadata["issuer"] == idp_service.url and metadata["spec_version"] == "1_0"
    assert set(metadata["delivery_methods_supported"]) == {PUSH, POLL}
    assert metadata["jwks_uri"] == f"{idp_service.url}/jwks"
    for endpoint in ("configuration_endpoint", "status_endpoint", "verification_endpoint"):
        assert metadata[endpoint].startswith(idp_service.url)
    discovery = requests.get(f"{idp_service.url}/.well-known/openid-configuration", timeout=10).json()
    assert discovery["backchannel_logout_supported"] and discovery["backchannel_logout_session_supported"]


def test_one_relying_party_can_never_read_or_change_anothers_stream(idp_service, receiver):
    shop, shop_secret = register(idp_service, name="Shop")
    other, other_secret = register(idp_service, redirect=OTHER_REDIRECT, name="Other")
    shop_token, stream = create_stream(idp_service, shop, shop_secret,
                                       {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"})
    assert stream["aud"] == shop.client_id and stream["iss"] == idp_service.url
    assert set(stream["events_delivered"]) >= {set_tokens.SESSION_REVOKED, set_tokens.CREDENTIAL_CHANGE}
    other_token = ssf_token(idp_service.url, other.client_id, other_secret)
    as_other = {"Authorization": f"Bearer {other_token}"}
    url, sid = f"{idp_service.url}/ssf", stream["stream_id"]
    attempts = [
        requests.get(f"{url}/streams", params={"stream_id": sid}, headers=as_other, timeout=10),
        requests.patch(f"{url}/streams", json={"stream_id": sid, "description": "mine now"}, headers=as_other,
                       timeout=10),
        requests.put(f"{url}/streams", json={"stream_id": sid, "delivery": {"method": POLL}}, headers=as_other,
                     timeout=10),
        requests.delete(f"{url}/streams", params={"stream_id": sid}, headers=as_other, timeout=10),
        requests.get(f"{url}/status", params={"stream_id": sid}, headers=as_other, timeout=10),
        requests.post(f"{url}/status", json={"stream_id": sid, "status": "disabled"}, headers=as_other, timeout=10),
        requests.post(f"{url}/verify", json={"stream_id": sid}, headers=as_other, timeout=10),
        requests.post(f"{url}/poll/{sid}", json={}, headers=as_other, timeout=10),
    ]
    for answer in attempts:
        assert answer.status_code == 404 and answer.json()["error"] == "stream_not_found", answer.text
    assert requests.get(f"{url}/streams", headers=as_other, timeout=10).json() == []
    # Unchanged, and still the shop's.
    as_shop = {"Authorization": f"Bearer {shop_token}"}
    mine = requests.get(f"{url}/streams", params={"stream_id": sid}, headers=as_shop, timeout=10).json()
    assert mine["delivery"]["endpoint_url"] == f"{receiver.url}/ssf/shop" and "description" not in mine
    assert requests.get(f"{url}/status", params={"stream_id": sid}, headers=as_shop,
                        timeout=10).json() == {"stream_id": sid, "status": "enabled"}
    # No token, a made-up token, a token for another scope: refused before anything is looked up.
    for headers in ({}, {"Authorization": "Bearer made-up"}, {"Authorization": "Basic eDp5"}):
        answer = requests.get(f"{url}/streams", headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
    refused = requests.post(f"{idp_service.url}/token", data={"grant_type": "client_credentials", "scope": "openid"},
                            auth=(other.client_id, other_secret), timeout=10)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    wrong_secret = requests.post(f"{idp_service.url}/token", data={"grant_type": "client_credentials",
                                                                   "scope": "ssf"}, auth=(other.client_id, "x"),
                                 timeout=10)
    assert wrong_secret.status_code == 401
    # The shop's own management works: update, pause, a second stream refused, delete.
    assert requests.patch(f"{url}/streams", json={"stream_id": sid, "description": "shop"}, headers=as_shop,
                          timeout=10).json()["description"] == "shop"
    assert requests.post(f"{url}/status", json={"stream_id": sid, "status": "paused"}, headers=as_shop,
                         timeout=10).json()["status"] == "paused"
    again = requests.post(f"{url}/streams", json={"delivery": {"method": POLL}}, headers=as_shop, timeout=10)
    assert again.status_code == 409 and again.json()["error"] == "stream_exists"
    assert requests.delete(f"{url}/streams", params={"stream_id": sid}, headers=as_shop, timeout=10).status_code == 204
    assert requests.get(f"{url}/streams", headers=as_shop, timeout=10).json() == []


def test_a_push_endpoint_must_be_https_or_loopback(idp_service):
    shop, secret = register(idp_service, name="Shop")
    token = ssf_token(idp_service.url, shop.client_id, secret)
    for delivery in ({"method": PUSH, "endpoint_url": "http://shop.example.jp/ssf"},
                     {"method": PUSH}, {"method": "urn:example:carrier-pigeon"}):
        answer = requests.post(f"{idp_service.url}/ssf/streams", json={"delivery": delivery},
                               headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request", answer.text


# --- events, their claims and signatures, to whom ------------------------------------------------------------

def test_card_events_reach_consented_receivers_as_signed_caep_events_and_logout_tokens(
        idp_service, signals, receiver, make_card):
    shop, secret = register(idp_service, receiver, name="Shop")
    other, other_secret = register(idp_service, receiver, redirect=OTHER_REDIRECT, name="Other")
    create_stream(idp_service, shop, secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"})
    create_stream(idp_service, other, other_secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/other"})
    card = make_card()
    holder = idp_service.register_card(card)
    logged_in = login(idp_service, shop, secret, card)  # the holder consents to the shop only
    sub = logged_in["claims"]["sub"]
    assert logged_in["claims"]["sid"]
    apply = idp_service.revocation.services.applier.apply
    with WorkerThread(signals):
        apply(card_event("card_lost", holder["holder"], holder["card_id"], "lost-1", "2026-02-01T00:00:00Z"))
        [held] = receiver.wait_for("ssf/shop", 1)
        [logout] = receiver.wait_for("bcl/shop", 1)
        apply(card_event("revocation_requested", holder["holder"], holder["card_id"], "rev-1",
                         "2026-02-02T00:00:00Z"))
        revoked = receiver.wait_for("ssf/shop", 3)[1:]
        receiver.wait_for("bcl/shop", 2)
    claims = verify(idp_service, held, "secevent+jwt", shop.client_id)
    assert claims["sub_id"] == {"format": "iss_sub", "iss": idp_service.url, "sub": sub}
    assert events_of(claims) == {set_tokens.SESSION_REVOKED: {"event_timestamp": claims["events"][
        set_tokens.SESSION_REVOKED]["event_timestamp"], "initiating_entity": "policy"}}
    kinds = {}
    for token in revoked:
        claims = verify(idp_service, token, "secevent+jwt", shop.client_id)
        assert claims["sub_id"]["sub"] == sub
        kinds.update(events_of(claims))
    assert kinds[set_tokens.CREDENTIAL_CHANGE]["credential_type"] == "x509"
    assert kinds[set_tokens.CREDENTIAL_CHANGE]["change_type"] == "revoke"
    assert set_tokens.SESSION_REVOKED in kinds
    logout_claims = verify(idp_service, logout, "logout+jwt", shop.client_id)
    assert logout_claims["sub"] == sub and "nonce" not in logout_claims
    assert logout_claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
    assert logout_claims["exp"] > logout_claims["iat"]
    # The other relying party has a stream and a logout URI, but the holder never consented to it.
    assert receiver.bodies("ssf/other") == [] and receiver.bodies("bcl/other") == []


def test_no_resident_register_reason_ever_reaches_a_relying_party(idp_service, signals, receiver, make_card):
    """Death, a move abroad, a court-ordered revocation: each ends sessions and revokes the credential, and the
    tokens say exactly that — the same members, whatever the reason."""
    shop, secret = register(idp_service, receiver, name="Shop")
    create_stream(idp_service, shop, secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"})
    apply = idp_service.revocation.services.applier.apply
    shapes = {}
    with WorkerThread(signals):
        for number, event_type in enumerate(("died", "moved_abroad", "revocation_requested", "key_compromised")):
            card = make_card()
            holder = idp_service.register_card(card)
            login(idp_service, shop, secret, card)
            before = len(receiver.bodies("ssf/shop"))
            if event_type in ("died", "moved_abroad"):
                apply(holder_event(event_type, holder["holder"], f"e-{number}", "2026-05-01T00:00:00Z"))
            else:
                apply(card_event(event_type, holder["holder"], holder["card_id"], f"e-{number}",
                                 "2026-05-01T00:00:00Z"))
            if event_type != "moved_abroad":  # by default it revokes the signing certificate only: nothing to say
                receiver.wait_for("ssf/shop", before + 2)  # session-revoked and credential-change
            time.sleep(0.5)  # anything more this event would cause (none is expected) has time to arrive
            arrived = receiver.bodies("ssf/shop")[before:]
            shape = []
            for token in arrived:
                claims = verify(idp_service, token, "secevent+jwt", shop.client_id)
                for kind, event in events_of(claims).items():
                    shape.append((kind, tuple(sorted((k, v) for k, v in event.items() if k != "event_timestamp"))))
                text = json.dumps(claims).lower()
                for word in ("died", "death", "deceased", "moved", "abroad", "court", "compromise", "reason",
                             holder["holder"].lower(), holder["card_id"].lower()):
                    assert word not in text, (event_type, word)
            shapes[event_type] = sorted(shape)
    moved_abroad = shapes.pop("moved_abroad")  # revokes the signing certificate only, unless configured otherwise
    assert moved_abroad == [] or moved_abroad == shapes["died"]
    assert len({tuple(shape) for shape in shapes.values()}) == 1, shapes


def test_a_renewal_is_a_credential_change_update(idp_service, signals, receiver, make_card, dev_ca):
    from jpki.devca import new_rsa_key
    from revocation.domain.events import parse_event

    shop, secret = register(idp_service, name="Shop")
    create_stream(idp_service, shop, secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"},
                  events_requested=[set_tokens.CREDENTIAL_CHANGE])
    card = make_card()
    holder = idp_service.register_card(card)
    sub = login(idp_service, shop, secret, card)["claims"]["sub"]
    from jpki import parse_certificate
    from jpki.profile import CertificateKind
    from nfc_bridge.virtual_card import VirtualCard

    old = parse_certificate(VirtualCard.load(card).certificate(CertificateKind.AUTH)).serial
    new = dev_ca.issue_auth(new_rsa_key().public_key(), dt.date(1990, 1, 2))
    with WorkerThread(signals):
        idp_service.revocation.services.applier.apply(parse_event({
            "event_id": "renew-2", "type": "certificate_renewed", "holder": holder["holder"],
            "card_id": holder["card_id"], "occurred_at": "2026-06-01T00:00:00Z", "source": "test",
            "renewals": [{"kind": "auth", "old_serial": f"{old:X}", "new_serial": f"{new.serial_number:X}",
                          "not_after": new.not_valid_after_utc.isoformat().replace("+00:00", "Z")}]}))
        [update] = receiver.wait_for("ssf/shop", 1)
    claims = verify(idp_service, update, "secevent+jwt", shop.client_id)
    assert claims["sub_id"]["sub"] == sub  # the same account: the renewal keeps the holder's pairwise sub
    assert events_of(claims)[set_tokens.CREDENTIAL_CHANGE]["change_type"] == "update"
    time.sleep(0.3)
    assert len(receiver.bodies("ssf/shop")) == 1  # session-revoked was not requested, so not delivered


# --- delivery: outages, restarts, dead letters, poll -----------------------------------------------------------

def worker_env(idp_service, tmp_path) -> dict:
    """The IdP's environment for `python -m idp signals run`: the same issuer, Redis, state and secret."""
    config = idp_service.services.config
    secret_file = tmp_path / "idp-secret"
    secret_file.write_text(config.secret.hex())
    return {"MYKEY_DEV": "1", "IDP_ISSUER": config.issuer, "REDIS_URL": config.redis_url,
            "MYKEY_VAR": str(config.var_dir), "REVOCATION_URL": config.revocation_url,
            "IDP_SECRET_FILE": str(secret_file), "SIGNALS_PUSH_BACKOFF_SECONDS": "0.2",
            "SIGNALS_PUSH_BACKOFF_MAX_SECONDS": "0.5", "SIGNALS_PUSH_MAX_ATTEMPTS": "1000"}


def wait_until(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout} s")


def test_nothing_is_lost_across_a_receiver_outage_and_a_killed_worker(idp_service, signals, receiver, make_card,
                                                                      tmp_path):
    shop, secret = register(idp_service, name="Shop")
    create_stream(idp_service, shop, secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"})
    holders = []
    for _ in range(2):
        card = make_card()
        holders.append((idp_service.register_card(card), login(idp_service, shop, secret, card)["claims"]["sub"]))
    receiver.answer = 503  # the receiver is down
    first = worker_process(worker_env(idp_service, tmp_path))
    try:
        apply = idp_service.revocation.services.applier.apply
        for number, (holder, _) in enumerate(holders):
            apply(card_event("card_lost", holder["holder"], holder["card_id"], f"lost-{number}",
                             "2026-02-01T00:00:00Z"))
            apply(card_event("revocation_requested", holder["holder"], holder["card_id"], f"rev-{number}",
                             "2026-02-02T00:00:00Z"))
        outbox = f"ssf:{shop.client_id}"
        wait_until(lambda: signals.outboxes.length(outbox) == 6, what="six SETs queued")
        wait_until(lambda: int(signals.outboxes.state(outbox).get("attempts", 0)) >= 2, what="retries")
        assert receiver.bodies("ssf/shop") == []
    finally:
        first.kill()  # the transmitter dies mid-retry
        first.wait(10)
    receiver.answer = 202  # the receiver is back
    second = worker_process(worker_env(idp_service, tmp_path))
    try:
        arrived = receiver.wait_for("ssf/shop", 6)
        time.sleep(0.5)
        arrived = receiver.bodies("ssf/shop")
    finally:
        second.terminate()
        second.wait(10)
    claims = [verify(idp_service, token, "secevent+jwt", shop.client_id) for token in arrived]
    assert len({c["jti"] for c in claims}) == 6 == len(claims)  # all of them, once each
    for _, sub in holders:  # in order per subject: sessions revoked at the loss, then the revocation's two
        kinds = [next(iter(c["events"])) for c in claims if c["sub_id"]["sub"] == sub]
        assert kinds[0] == set_tokens.SESSION_REVOKED and sorted(kinds[1:]) == sorted(
            [set_tokens.SESSION_REVOKED, set_tokens.CREDENTIAL_CHANGE]), kinds
    assert signals.outboxes.length(f"ssf:{shop.client_id}") == 0


def test_a_stopped_worker_hands_its_outboxes_over_at_once(idp_service, signals, receiver, tmp_path):
    """SIGTERM ends a worker's pushers with their leases given up: a successor pushes at once instead of waiting
    for the lease to run out (a killed worker's lease expires by itself, the test above)."""
    from idp import keys as idp_keys

    shop, secret = register(idp_service, name="Shop")
    create_stream(idp_service, shop, secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"})
    lease = idp_keys.outbox_lease(f"ssf:{shop.client_id}")
    worker = worker_process(worker_env(idp_service, tmp_path))
    try:
        wait_until(lambda: idp_service.services.redis.exists(lease), what="the outbox leased")
    finally:
        worker.terminate()
        worker.wait(20)
    assert worker.returncode == 0
    assert not idp_service.services.redis.exists(lease)


def test_a_refused_token_is_dead_lettered_and_shown_to_operators(idp_service, receiver, make_card):
    from idp.signals.config import SignalsConfig
    from idp.signals.service import build_signals

    signals = build_signals(idp_service.services, SignalsConfig(push_backoff_first=0.05, push_backoff_max=0.05,
                                                                push_max_attempts=3))
    shop, secret = register(idp_service, receiver, name="Shop")
    create_stream(idp_service, shop, secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"})
    card = make_card()
    holder = idp_service.register_card(card)
    login(idp_service, shop, secret, card)
    receiver.error = "invalid_key"  # the SET push refuses (400); the logout endpoint too
    with WorkerThread(signals):
        idp_service.revocation.services.applier.apply(
            card_event("card_lost", holder["holder"], holder["card_id"], "lost-dl", "2026-02-01T00:00:00Z"))
        dead = wait_until(lambda: len(signals.outboxes.dead_letters()) >= 2 and signals.outboxes.dead_letters(),
                          what="dead letters")
    assert {(d["channel"], d["code"], d["client_id"]) for d in dead} == {
        ("ssf", "invalid_key", shop.client_id), ("bcl", "invalid_key", shop.client_id)}
    token = idp_service.revocation.services.operators.add("amy")
    console = requests.Session()
    console.post(f"{idp_service.url}/operator/login", data={"token": token}, timeout=10)
    page = console.get(f"{idp_service.url}/operator/signals", timeout=10)
    assert page.status_code == 200 and "invalid_key" in page.text and "Shop" in page.text
    assert dead[0]["jti"] in page.text


def test_a_receiver_that_stays_down_has_its_tokens_dead_lettered_after_the_bounded_tries(idp_service, receiver,
                                                                                        make_card):
    from idp.signals.config import SignalsConfig
    from idp.signals.service import build_signals

    signals = build_signals(idp_service.services, SignalsConfig(push_backoff_first=0.05, push_backoff_max=0.05,
                                                                push_max_attempts=3))
    shop, secret = register(idp_service, name="Shop")
    create_stream(idp_service, shop, secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"})
    card = make_card()
    holder = idp_service.register_card(card)
    login(idp_service, shop, secret, card)
    receiver.answer = 500
    with WorkerThread(signals):
        idp_service.revocation.services.applier.apply(
            card_event("card_lost", holder["holder"], holder["card_id"], "lost-gu", "2026-02-01T00:00:00Z"))
        [dead] = wait_until(lambda: signals.outboxes.dead_letters(), what="a dead letter")
    assert dead["code"] == "gave_up" and dead["attempts"] == "3" and dead["event"] == "session-revoked"


def test_poll_delivery_with_acknowledgements_errors_and_verification(idp_service, signals, make_card):
    shop, secret = register(idp_service, name="Shop")
    token, stream = create_stream(idp_service, shop, secret, {"method": POLL})
    poll_url = stream["delivery"]["endpoint_url"]
    assert poll_url == f"{idp_service.url}/ssf/poll/{stream['stream_id']}"
    headers = {"Authorization": f"Bearer {token}"}

    def poll(**body):
        answer = requests.post(poll_url, json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert poll(returnImmediately=True) == {"sets": {}, "moreAvailable": False}
    verify_answer = requests.post(f"{idp_service.url}/ssf/verify", json={"stream_id": stream["stream_id"],
                                                                         "state": "s-123"}, headers=headers,
                                  timeout=10)
    assert verify_answer.status_code == 204
    sets = poll(returnImmediately=True)["sets"]
    [(jti, verification)] = sets.items()
    claims = verify(idp_service, verification, "secevent+jwt", shop.client_id)
    assert claims["jti"] == jti and claims["events"] == {set_tokens.VERIFICATION: {"state": "s-123"}}
    assert claims["sub_id"] == {"format": "opaque", "id": stream["stream_id"]}
    card = make_card()
    holder = idp_service.register_card(card)
    login(idp_service, shop, secret, card)
    with WorkerThread(signals):
        idp_service.revocation.services.applier.apply(
            card_event("revocation_requested", holder["holder"], holder["card_id"], "rev-p", "2026-02-01T00:00:00Z"))
        answer = poll(ack=[jti], maxEvents=1)  # waits until one is there (not returnImmediately)
    assert len(answer["sets"]) == 1 and answer["moreAvailable"] is True
    [(first, _)] = answer["sets"].items()
    answer = poll(ack=[first], returnImmediately=True)
    [(second, _)] = answer["sets"].items()
    assert second != first and answer["moreAvailable"] is False
    assert poll(setErrs={second: {"err": "invalid_audience", "description": "test"}},
                returnImmediately=True) == {"sets": {}, "moreAvailable": False}
    [dead] = signals.outboxes.dead_letters()
    assert dead["jti"] == second and dead["code"] == "invalid_audience"
    bad = requests.post(poll_url, json={"maxEvents": "lots"}, headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


# --- back-channel logout and the holder's own actions ----------------------------------------------------------

def test_rp_initiated_logout_sends_a_logout_token_with_the_id_tokens_sid(idp_service, signals, receiver, make_card):
    shop, secret = register(idp_service, receiver, name="Shop")
    card = make_card()
    idp_service.register_card(card)
    logged_in = login(idp_service, shop, secret, card)
    with WorkerThread(signals):
        logged_in["browser"].get(f"/logout?id_token_hint={logged_in['id_token']}")
        [token] = receiver.wait_for("bcl/shop", 1)
    claims = verify(idp_service, token, "logout+jwt", shop.client_id)
    assert claims["sid"] == logged_in["claims"]["sid"] and claims["sub"] == logged_in["claims"]["sub"]
    assert not idp_service.services.redis.keys("idp:session-rps:*")  # forgotten with the session


def test_sid_is_pairwise_per_relying_party(idp_service, make_card):
    shop, shop_secret = register(idp_service, name="Shop")
    other, other_secret = register(idp_service, redirect=OTHER_REDIRECT, name="Other")
    card = make_card()
    idp_service.register_card(card)
    first = login(idp_service, shop, shop_secret, card)
    browser = first["browser"]
    session = OAuth2Session(other.client_id, other_secret, scope="openid", redirect_uri=OTHER_REDIRECT,
                            token_endpoint_auth_method="client_secret_basic", code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(f"{idp_service.url}/authorize", code_verifier=verifier,
                                              nonce=secrets.token_urlsafe(16))
    final = browser.follow(browser.get(url))  # the same IdP session: consent, no new card login
    token = session.fetch_token(f"{idp_service.url}/token", authorization_response=final.headers["Location"],
                                code_verifier=verifier)
    second = verify(idp_service, token["id_token"], "JWT", other.client_id)
    assert first["claims"]["sid"] != second["sid"] and first["claims"]["sub"] != second["sub"]


def test_withdrawing_consent_and_logging_out_everywhere_end_sessions_at_relying_parties(
        idp_service, signals, receiver, make_card):
    shop, secret = register(idp_service, receiver, name="Shop")
    create_stream(idp_service, shop, secret, {"method": PUSH, "endpoint_url": f"{receiver.url}/ssf/shop"})
    card = make_card()
    holder = idp_service.register_card(card)
    shard = crl_shard(parse_certificate(VirtualCard.load(card).certificate(CertificateKind.AUTH)).serial)
    logged_in = login(idp_service, shop, secret, card)
    browser, sub = logged_in["browser"], logged_in["claims"]["sub"]
    page = browser.get("/account")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    with WorkerThread(signals):
        assert browser.post("/account/logout-everywhere", {"csrf": csrf}).status_code == 200
        [revoked] = receiver.wait_for("ssf/shop", 1)
        receiver.wait_for("bcl/shop", 1)
        assert browser.get("/account").status_code != 200  # this IdP session ended too
        claims = verify(idp_service, revoked, "secevent+jwt", shop.client_id)
        assert claims["sub_id"]["sub"] == sub
        assert events_of(claims)[set_tokens.SESSION_REVOKED]["initiating_entity"] == "user"
        # Log in again, then withdraw the shop's consent: its session for the holder ends.
        again = login(idp_service, shop, secret, card)
        page = again["browser"].get("/account")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        again["browser"].post(f"/account/consents/{shop.client_id}/withdraw", {"csrf": csrf})
        [_, withdrawn] = receiver.wait_for("ssf/shop", 2)
    assert verify(idp_service, withdrawn, "secevent+jwt", shop.client_id)["sub_id"]["sub"] == sub
    with WorkerThread(signals):  # the consent is gone: the card's loss is no longer the shop's business
        idp_service.revocation.services.applier.apply(
            card_event("card_lost", holder["holder"], holder["card_id"], "lost-after", "2026-02-01T00:00:00Z"))
        wait_until(lambda: not signals.services.redis.xinfo_groups(status_feed.feed_key("auth", shard))[0]["lag"],
                   what="the feed read")
        time.sleep(0.3)
    assert len(receiver.bodies("ssf/shop")) == 2


def test_the_clients_cli_registers_a_backchannel_logout_uri(redis_server, redis_client, tmp_path):
    import os
    import re
    import subprocess
    import sys

    from idp.oidc.clients import ClientRegistry
    from tests.signals_flow import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "MYKEY_VAR": str(tmp_path)}

    def idp(*args):
        return subprocess.run([sys.executable, "-m", "idp", *args], env=env, capture_output=True, text=True,
                              timeout=60, cwd=ROOT)

    added = idp("clients", "add", "--name", "Shop", "--redirect-uri", "https://shop.example.jp/cb",
                "--backchannel-logout-uri", "https://shop.example.jp/backchannel-logout")
    assert added.returncode == 0, added.stderr
    client_id = re.search(r"client_id (rp_\S+)", added.stdout).group(1)
    client = ClientRegistry(redis_client).get(client_id)
    assert client.backchannel_logout_uri == "https://shop.example.jp/backchannel-logout"
    bad = idp("clients", "add", "--name", "X", "--redirect-uri", "https://x.example.jp/cb",
              "--backchannel-logout-uri", "http://x.example.jp/logout#frag")
    assert bad.returncode == 1 and "invalid_redirect_uri" in bad.stderr
    assert "signals" in idp("--help").stdout and idp("signals", "run", "--help").returncode == 0


def test_a_private_key_jwt_client_gets_its_ssf_token_with_authlib(idp_service):
    """The same client authentication as the code exchange: a client assertion signed with the client's key."""
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, private=True, parameters={"kid": "rp-key-1"})
    client, _ = idp_service.services.clients.add("JWT Shop", [REDIRECT], jwks={"keys": [key.as_dict(private=False)]})
    token_endpoint = f"{idp_service.url}/token"
    session = OAuth2Session(client.client_id, key.as_dict(private=True), scope="ssf",
                            token_endpoint_auth_method="private_key_jwt")
    session.register_client_auth_method(PrivateKeyJWT(token_endpoint, alg="RS256"))
    token = session.fetch_token(token_endpoint, grant_type="client_credentials")
    assert token["scope"] == "ssf" and "refresh_token" not in token
    answer = requests.post(f"{idp_service.url}/ssf/streams", json={"delivery": {"method": POLL}},
                           headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10)
    assert answer.status_code == 201 and answer.json()["aud"] == client.client_id
    # The ssf token is no access token for the holder's data.
    assert requests.get(f"{idp_service.url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"},
                        timeout=10).status_code == 401


def test_malformed_stream_requests_get_a_clear_4xx(idp_service):
    shop, secret = register(idp_service, name="Shop")
    token, stream = create_stream(idp_service, shop, secret, {"method": POLL})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url, sid = f"{idp_service.url}/ssf", stream["stream_id"]
    cases = [
        ("PATCH", "/streams", "{not json"), ("PATCH", "/streams", "[1, 2]"),
        ("PATCH", "/streams", json.dumps({"stream_id": sid, "delivery": "push please"})),
        ("PATCH", "/streams", json.dumps({"stream_id": sid, "events_requested": "all"})),
        ("PATCH", "/streams", json.dumps({"stream_id": sid, "description": "x" * 1000})),
        ("PATCH", "/streams", json.dumps({"stream_id": sid, "iss": "me", "colour": "blue"})),
        ("PATCH", "/streams", json.dumps({"stream_id": sid, "delivery": {"method": PUSH, "endpoint_url": "https://["}})),
        ("POST", "/status", json.dumps({"stream_id": sid, "status": "on"})),
        ("POST", "/status", json.dumps({"stream_id": sid, "status": "paused", "reason": ["x"]})),
        ("POST", "/verify", json.dumps({"stream_id": sid, "state": {"x": 1}})),
        ("POST", f"/poll/{sid}", json.dumps({"ack": "all"})),
        ("POST", f"/poll/{sid}", json.dumps({"maxEvents": True})),
    ]
    for method, path, body in cases:
        answer = requests.request(method, f"{url}{path}", data=body, headers=headers, timeout=10)
        assert answer.status_code == 400, (method, path, body, answer.status_code, answer.text)
        assert answer.json()["error"] == "invalid_request" and answer.json()["message"]
        assert "blue" not in answer.text and "xxxx" not in answer.text  # nothing of the request echoed back
    assert requests.patch(f"{url}/streams", json={"description": "no id"}, headers=headers,
                          timeout=10).status_code == 404

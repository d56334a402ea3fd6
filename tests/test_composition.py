"""The composition root: the one adapter from the revocation service's status store to the IdP's
`CertificateRecords`, against a real redis-server, and both apps built from the environment as gunicorn builds them."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import sys

import requests
from cryptography.x509 import ReasonFlags

from deploy.composition import StatusStoreRecords, idp_app, revocation_app
from devstack.http import LiveServer
from devstack.processes import ROOT
from idp.certificate_records import CertificateRecord, CertificateRecords, Standing
from revocation.storage.keys import KeySpace
from revocation.storage.store import StatusRecord, StatusStore, hold, release, revoke

ISSUER = "auth"
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def new_serial() -> int:
    return secrets.randbits(64) | 1 << 63


def records_on(redis_client) -> tuple[StatusStore, CertificateRecords]:
    store = StatusStore(redis_client, KeySpace(status_buckets=1024, holder_buckets=1024))
    return store, StatusStoreRecords(store)


def test_a_certificate_never_issued_is_unknown(redis_client):
    _, records = records_on(redis_client)
    assert records.find(ISSUER, new_serial()) is None


def test_the_idp_reads_the_layout_the_revocation_service_recorded_and_may_start_first(redis_client):
    from revocation.storage.store import claim_layout

    records = StatusStoreRecords(client=redis_client)  # as the IdP builds it: no bucket counts of its own
    serial = new_serial()
    assert records.find(ISSUER, serial) is None and records.previous(ISSUER, serial) is None  # nothing recorded yet

    keys = KeySpace(status_buckets=256, holder_buckets=128)  # not the defaults: the reader must learn them
    claim_layout(redis_client, keys)
    StatusStore(redis_client, keys).register(ISSUER, serial, StatusRecord.issued(0, NOT_AFTER))
    assert records.find(ISSUER, serial) == CertificateRecord(Standing.GOOD, NOT_AFTER, None)


def find_in_one_pipeline(redis_client, records, *questions: tuple[str, int]) -> list:
    """`find_queued` as the login uses it: every question queued on one pipeline, one round trip."""
    with redis_client.pipeline(transaction=False) as pipe:
        answers = [records.find_queued(pipe, issuer, serial) for issuer, serial in questions]
        replies = pipe.execute()
    assert len(replies) == len(questions)  # exactly one command each
    return [answer(reply) for answer, reply in zip(answers, replies, strict=True)]


def test_a_queued_find_answers_as_find_does_in_one_pipeline(redis_client):
    store, records = records_on(redis_client)
    good, held, revoked, unknown = (new_serial() for _ in range(4))
    for serial in (good, held, revoked):
        store.register(ISSUER, serial, StatusRecord.issued(0, NOT_AFTER))
    store.transition(ISSUER, held, hold(NOW))
    store.transition(ISSUER, revoked, revoke(ReasonFlags.key_compromise, NOW))
    questions = [(ISSUER, serial) for serial in (good, held, revoked, unknown)]
    assert find_in_one_pipeline(redis_client, records, *questions) == [records.find(*q) for q in questions]
    assert [r and r.standing for r in find_in_one_pipeline(redis_client, records, *questions)] == \
        [Standing.GOOD, Standing.ON_HOLD, Standing.REVOKED, None]


def test_a_queued_find_before_any_layout_was_recorded_knows_nothing_and_looks_again(redis_client):
    from revocation.storage.store import claim_layout

    records = StatusStoreRecords(client=redis_client)
    serial = new_serial()
    assert find_in_one_pipeline(redis_client, records, (ISSUER, serial)) == [None]
    keys = KeySpace(status_buckets=256, holder_buckets=128)
    claim_layout(redis_client, keys)
    StatusStore(redis_client, keys).register(ISSUER, serial, StatusRecord.issued(0, NOT_AFTER))
    assert find_in_one_pipeline(redis_client, records, (ISSUER, serial)) == \
        [CertificateRecord(Standing.GOOD, NOT_AFTER, None)]


def test_an_issued_certificate_is_good_until_it_expires(redis_client):
    store, records = records_on(redis_client)
    serial = new_serial()
    store.register(ISSUER, serial, StatusRecord.issued(0, NOT_AFTER))

    record = records.find(ISSUER, serial)
    assert record == CertificateRecord(Standing.GOOD, NOT_AFTER, None)
    assert record.good_at(NOW) and not record.good_at(NOT_AFTER)


def test_a_held_certificate_is_not_good_and_a_released_one_is_again(redis_client):
    store, records = records_on(redis_client)
    serial = new_serial()
    store.register(ISSUER, serial, StatusRecord.issued(0, NOT_AFTER))

    store.transition(ISSUER, serial, hold(NOW))
    assert records.find(ISSUER, serial).standing is Standing.ON_HOLD
    assert not records.find(ISSUER, serial).good_at(NOW)
    store.transition(ISSUER, serial, release(NOW + dt.timedelta(hours=1)))
    assert records.find(ISSUER, serial).good_at(NOW)


def test_a_revoked_certificate_is_not_good(redis_client):
    store, records = records_on(redis_client)
    serial = new_serial()
    store.register(ISSUER, serial, StatusRecord.issued(0, NOT_AFTER))
    store.transition(ISSUER, serial, revoke(ReasonFlags.key_compromise, NOW))

    record = records.find(ISSUER, serial)
    assert record.standing is Standing.REVOKED and not record.good_at(NOW)


def test_a_signing_certificate_names_its_auth_twin(redis_client):
    store, records = records_on(redis_client)
    auth, signing = new_serial(), new_serial()
    store.register("signing", signing, StatusRecord.issued(0, NOT_AFTER, auth_serial=auth))

    assert records.find("signing", signing).auth_serial == auth


def test_a_renewal_names_the_certificate_it_replaced(redis_client):
    store, records = records_on(redis_client)
    old, new = new_serial(), new_serial()
    store.link_renewal(ISSUER, old, new)

    assert records.previous(ISSUER, new) == old
    assert records.previous(ISSUER, old) is None


def development_env(redis_server, tmp_path, dev_ca) -> dict[str, str]:
    var = tmp_path / "var"
    dev_ca.save(var / "pki")
    return {"MYKEY_DEV": "1", "REDIS_URL": redis_server.url, "MYKEY_VAR": str(var),
            "REVOCATION_URL": dev_ca.revocation_url}


def test_both_apps_are_built_from_the_environment(redis_server, tmp_path, dev_ca, monkeypatch):
    for name, value in development_env(redis_server, tmp_path, dev_ca).items():
        monkeypatch.setenv(name, value)
    with LiveServer(revocation_app()) as revocation, LiveServer(idp_app()) as idp:
        assert requests.get(f"{revocation.url}/healthz", timeout=10).json() == {"status": "ok"}
        assert requests.get(f"{idp.url}/healthz", timeout=10).json() == {"status": "ok"}
        discovery = requests.get(f"{idp.url}/.well-known/openid-configuration", timeout=10)
        assert discovery.status_code == 200


def test_the_development_server_refuses_a_configuration_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MYKEY_DEV"}
    result = subprocess.run([sys.executable, "-m", "deploy", "serve", "idp"], capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(ROOT), "MYKEY_VAR": str(tmp_path)}, cwd=ROOT, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error (configuration): The IdP will not start outside development")
    assert "Traceback" not in result.stderr

"""Incremental CRL publication (revocation/crl/publisher.py): a publisher that applies the shard's change log to
what it kept says exactly what a publication from scratch says — after revocations, holds, releases and renewals
applied through the real applier, across a restart, with two publishers taking turns, and when the log was
trimmed. Real redis-server, real certificates from the dev CA, openssl on the results."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re
import secrets

import pytest
from cryptography import x509
from cryptography.x509 import ReasonFlags

from jpki.profile import crl_shard
from revocation.crl import publisher as publisher_module
from revocation.crl.der import revoked_entries
from revocation.crl.publisher import CrlPublisher
from revocation.domain.events import parse_event
from revocation.storage.store import StatusStore
from tests.test_crl import apply, openssl, openssl_verify, pem, reason_of

pytestmark = pytest.mark.timeout(300)

SHARD = 5  # every synthetic certificate sits in this shard of its issuer
SLUGS = ("auth", "signing")
_NOT_AFTER = "2031-01-01T00:00:00Z"
PAGE = publisher_module.CHANGES_PAGE


# --- helpers ------------------------------------------------------------------------------------------------


class CountingStore(StatusStore):
    """The real store, counting how often a publisher reads a whole shard."""

    def __init__(self, client, keys):
        super().__init__(client, keys)
        self.full_reads = 0

    def crl_entries(self, issuer, shard):
        self.full_reads += 1
        return super().crl_entries(issuer, shard)


def counting_publisher(services) -> CrlPublisher:
    return CrlPublisher(CountingStore(services.redis, services.store.keys), services.issuers, services.config)


class Fleet:
    """Cards whose certificates all sit in shard SHARD, driven by resident-register events through the applier."""

    def __init__(self, services, seed: int):
        self.services = services
        self.rng = random.Random(seed)  # a reproducible scenario, not a secret
        self.minutes = itertools.count(1)
        self.cards: list[dict] = []

    def serial(self) -> int:
        return (1 + self.rng.randrange(1 << 59)) * 16 + SHARD

    def send(self, card: dict, event_type: str, **fields) -> None:
        occurred = dt.datetime(2026, 2, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=next(self.minutes))
        self.services.applier.apply(parse_event({
            "event_id": f"inc-{secrets.token_hex(4)}x{secrets.token_hex(4)}", "type": event_type,
            "holder": card["holder"], "occurred_at": occurred.isoformat(), "source": "test", **fields}))

    def issue(self) -> dict:
        tag = f"{secrets.token_hex(3)}x{secrets.token_hex(3)}"
        card = {"holder": f"inc-holder-{tag}", "card_id": f"inc-card-{tag}", "auth": self.serial(),
                "signing": self.serial()}
        self.send(card, "certificate_issued", card_id=card["card_id"], certificates=[
            {"serial": f"{card[kind]:X}", "kind": kind, "not_after": _NOT_AFTER} for kind in SLUGS])
        self.cards.append(card)
        return card

    def renew(self, card: dict) -> None:
        """New certificates on a new card: the old ones are revoked (superseded), the new ones good."""
        new = {kind: self.serial() for kind in SLUGS}
        card_id = f"{card['card_id']}r"
        self.send(card, "certificate_renewed", card_id=card_id, renewals=[
            {"kind": kind, "old_serial": f"{card[kind]:X}", "new_serial": f"{new[kind]:X}", "not_after": _NOT_AFTER}
            for kind in SLUGS])
        card.update(new, card_id=card_id)

    def step(self) -> None:
        """One to four events on random cards: issuance, loss, finding, revocations, renewal."""
        for _ in range(self.rng.randint(1, 4)):
            if len(self.cards) < 3 or self.rng.random() < 0.15:
                self.issue()
                continue
            card = self.rng.choice(self.cards)
            action = self.rng.choice(["card_lost", "card_lost", "card_found", "card_found", "key_compromised",
                                      "revocation_requested", "record_error", "renew"])
            if action == "renew":
                self.renew(card)
            else:
                self.send(card, action, card_id=card["card_id"])


def entries_of(crl: x509.CertificateRevocationList) -> set[tuple]:
    return {(entry.serial_number, reason_of(entry), entry.revocation_date_utc) for entry in crl}


def expected(services, slug: str, now: dt.datetime) -> tuple[set[tuple], set[tuple] | None]:
    """What the shard's complete and delta CRLs must hold, worked out here from the store and the stored base CRL
    (RFC 5280 §5.2.4): the delta has every entry new or changed since the base, and removeFromCRL for every entry
    gone since the base or hold lifted since it (at the release time when known, else the publication's)."""
    store = services.store
    full = {(serial, None if reason is ReasonFlags.unspecified else reason, at)
            for serial, reason, at in store.crl_entries(slug, SHARD)}
    key = store.keys.crl_published(slug, SHARD)
    base_number = services.redis.hget(key, "base_number")
    if not base_number:
        return full, None
    # The base is kept under its number (or, stored by an older version, in the single `base` field).
    base_der = next(der for der in services.redis.hmget(key, [f"full:{int(base_number)}", "base"]) if der)
    base = entries_of(x509.load_der_x509_crl(base_der))
    released = dict(store.crl_released(slug, SHARD))
    gone = ({serial for serial, _, _ in base} | released.keys()) - {serial for serial, _, _ in full}
    return full, (full - base) | {(serial, ReasonFlags.remove_from_crl, released.get(serial) or now) for serial in gone}


def stored(services, slug: str) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The stored complete and delta CRLs (fields named by their CRL number), and the base's number."""
    key = services.store.keys.crl_published(slug, SHARD)
    number, base_number = services.redis.hmget(key, ["number", "base_number"])
    if number is None:
        return None, None, None
    full, delta = services.redis.hmget(key, [f"full:{int(number)}", f"delta:{int(number)}"])
    return full, delta, base_number


def publish_and_check(services, publisher: CrlPublisher, now: dt.datetime) -> None:
    """Publish both issuers' shard with `publisher` and check it against the expectation, then against a publication
    from scratch by a fresh publisher (same time, so removeFromCRL at the publication's time agrees too)."""
    for slug in SLUGS:
        want_full, want_delta = expected(services, slug, now)
        base_before = stored(services, slug)[2]
        publisher.publish(slug, SHARD, now=now)
        full_der, delta_der, base_after = stored(services, slug)
        full = x509.load_der_x509_crl(full_der)
        assert full.is_signature_valid(services.issuers[slug].certificate.public_key())
        assert entries_of(full) == want_full, slug
        if want_delta is None:
            assert delta_der == b""
            continue
        delta = x509.load_der_x509_crl(delta_der)
        assert delta.is_signature_valid(services.issuers[slug].certificate.public_key())
        assert delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number == int(base_before)
        assert entries_of(delta) == want_delta, slug
        if base_after != base_before:
            continue  # this publication moved the base: one from scratch now would build its delta against it
        CrlPublisher(services.store, services.issuers, services.config).publish(slug, SHARD, now=now)
        fresh_full, fresh_delta, _ = stored(services, slug)
        assert sorted(revoked_entries(fresh_full)) == sorted(revoked_entries(full_der))
        assert sorted(revoked_entries(fresh_delta)) == sorted(revoked_entries(delta_der))
    for slug in SLUGS:
        assert kept_crls(services, slug) == current_crls(services, slug)


def kept_crls(services, slug: str) -> set[bytes]:
    """The fields of the published hash that hold a CRL."""
    return {name for name in services.redis.hkeys(services.store.keys.crl_published(slug, SHARD))
            if re.fullmatch(rb"(full|delta)(:[0-9]+)?|base", name)}


def current_crls(services, slug: str) -> set[bytes]:
    """What the published hash should hold: the latest complete and delta CRLs, and the base's complete CRL."""
    number, base_number = services.redis.hmget(services.store.keys.crl_published(slug, SHARD),
                                               ["number", "base_number"])
    return {b"full:%d" % int(number), b"delta:%d" % int(number), b"full:%d" % int(base_number)}


def start(_services) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# --- incremental = from scratch -----------------------------------------------------------------------------


@pytest.mark.parametrize("page", [PAGE, 2])
@pytest.mark.parametrize("hours_between", [0, 5])
def test_each_incremental_publication_says_what_one_from_scratch_says(revocation_services, monkeypatch, page,
                                                                      hours_between):
    """Thirty rounds of events through the applier, each followed by an incremental publication of both shards.
    Five hours apart, the base (moved when older than half the one-day validity) moves every third round; a page of
    two change-log entries makes most reads take several pages."""
    monkeypatch.setattr(publisher_module, "CHANGES_PAGE", page)
    fleet = Fleet(revocation_services, seed=page * 10 + hours_between)
    publisher = counting_publisher(revocation_services)
    now = start(revocation_services)
    for round_ in range(30):
        fleet.step()
        publish_and_check(revocation_services, publisher, now + dt.timedelta(hours=hours_between * round_,
                                                                            seconds=round_))
    if page == PAGE:
        # One read of each shard, at the first publication; everything after came from the change log, also after
        # a fresh publisher published a newer number in between and after this publisher moved the base itself.
        assert publisher.store.full_reads == len(SLUGS)


def test_a_restarted_publisher_reads_everything_once_then_follows_the_log(revocation_services):
    fleet = Fleet(revocation_services, seed=7)
    now = start(revocation_services)
    first = counting_publisher(revocation_services)
    for round_ in range(8):
        fleet.step()
        publish_and_check(revocation_services, first, now + dt.timedelta(seconds=round_))
    restarted = counting_publisher(revocation_services)  # the same shard, known to nothing in this process
    for round_ in range(8, 16):
        fleet.step()
        publish_and_check(revocation_services, restarted, now + dt.timedelta(seconds=round_))
    assert first.store.full_reads == restarted.store.full_reads == len(SLUGS)


def test_two_publishers_taking_turns_stay_incremental_until_the_other_moves_the_base(revocation_services):
    fleet = Fleet(revocation_services, seed=11)
    now = start(revocation_services)
    one, other = counting_publisher(revocation_services), counting_publisher(revocation_services)
    for round_ in range(16):
        fleet.step()
        publish_and_check(revocation_services, (one, other)[round_ % 2], now + dt.timedelta(seconds=round_))
    assert one.store.full_reads == other.store.full_reads == len(SLUGS)

    # `one` moves the base: `other` no longer knows what the delta is against, so it reads the shard again.
    for slug in SLUGS:
        one.publish(slug, SHARD, now=now + dt.timedelta(seconds=20), rebase=True)
    fleet.step()
    publish_and_check(revocation_services, other, now + dt.timedelta(seconds=21))
    assert other.store.full_reads == 2 * len(SLUGS)
    fleet.step()
    publish_and_check(revocation_services, other, now + dt.timedelta(seconds=22))
    assert other.store.full_reads == 2 * len(SLUGS)


@pytest.mark.parametrize("cut", ["trim", "delete"])
def test_a_change_log_that_lost_entries_after_the_position_forces_a_full_read(revocation_services, cut):
    fleet = Fleet(revocation_services, seed=13)
    now = start(revocation_services)
    publisher = counting_publisher(revocation_services)
    for round_ in range(4):
        fleet.step()
        publish_and_check(revocation_services, publisher, now + dt.timedelta(seconds=round_))
    for card in fleet.cards:  # changes the publisher has not read, then the log loses (some of) them
        fleet.send(card, "card_lost", card_id=card["card_id"])
        fleet.send(card, "key_compromised", card_id=card["card_id"])
    for slug in SLUGS:
        log = revocation_services.store.keys.crl_changes(slug, SHARD)
        if cut == "trim":
            revocation_services.redis.xtrim(log, maxlen=1, approximate=False)
        else:
            revocation_services.redis.delete(log)
    publish_and_check(revocation_services, publisher, now + dt.timedelta(seconds=10))
    assert publisher.store.full_reads == 2 * len(SLUGS)
    fleet.step()
    publish_and_check(revocation_services, publisher, now + dt.timedelta(seconds=11))
    assert publisher.store.full_reads == 2 * len(SLUGS)


def test_moving_the_base_trims_the_change_log_to_what_later_deltas_need(revocation_services):
    fleet = Fleet(revocation_services, seed=17)
    card = fleet.issue()
    now = start(revocation_services)
    publisher = counting_publisher(revocation_services)
    publish_and_check(revocation_services, publisher, now)
    for _ in range(150):  # 300 change-log entries per shard: more than a few of the stream's nodes (100 each)
        fleet.send(card, "card_lost", card_id=card["card_id"])
        fleet.send(card, "card_found", card_id=card["card_id"])
    logs = [revocation_services.store.keys.crl_changes(slug, SHARD) for slug in SLUGS]
    assert all(revocation_services.redis.xlen(log) >= 300 for log in logs)
    for slug in SLUGS:
        publisher.publish(slug, SHARD, now=now + dt.timedelta(seconds=1), rebase=True)
    # MINID ~ drops whole stream nodes (100 entries each): what is left is the node holding the position.
    assert all(revocation_services.redis.xlen(log) <= 100 for log in logs)
    fleet.send(card, "card_lost", card_id=card["card_id"])
    publish_and_check(revocation_services, publisher, now + dt.timedelta(seconds=2))
    assert publisher.store.full_reads == 2 * len(SLUGS)  # the first publication, and the rebase


def test_a_shard_stored_by_the_single_field_layout_is_served_then_republished(revocation_services):
    """Before CRLs were kept under their number, the hash held one `full`, `delta` and `base` field."""
    services = revocation_services
    fleet = Fleet(services, seed=19)
    now = start(services)
    for round_ in range(3):
        fleet.step()
        publish_and_check(services, counting_publisher(services), now + dt.timedelta(seconds=round_))
    served = {}
    for slug in SLUGS:
        key = services.store.keys.crl_published(slug, SHARD)
        number, base_number = (int(v) for v in services.redis.hmget(key, ["number", "base_number"]))
        full, delta, base = services.redis.hmget(key, [f"full:{number}", f"delta:{number}", f"full:{base_number}"])
        services.redis.hdel(key, f"full:{number}", f"delta:{number}", f"full:{base_number}")
        services.redis.hset(key, mapping={"full": full, "delta": delta, "base": base})
        served[slug] = full
    upgraded = counting_publisher(services)
    assert {slug: upgraded.get(slug, SHARD).der for slug in SLUGS} == served
    fleet.step()
    publish_and_check(services, upgraded, now + dt.timedelta(seconds=5))  # its delta against the old `base`


class RacingClient:
    """The real client, except that right after a reader reads a publication's number, `race` runs once."""

    def __init__(self, client, race):
        self._client, self._race = client, [race]

    def __getattr__(self, name):
        return getattr(self._client, name)

    def hmget(self, key, fields, *args):
        answer = self._client.hmget(key, fields, *args)
        if list(fields)[:1] == ["number"] and self._race:
            self._race.pop()()
        return answer


def test_a_reader_whose_crl_is_replaced_between_its_two_reads_reads_again(revocation_services):
    services = revocation_services
    for _ in range(3):
        services.crl.publish("auth", SHARD)  # the base is 1, the current publication 3
    reader = CrlPublisher(StatusStore(RacingClient(services.redis, lambda: services.crl.publish("auth", SHARD)),
                                      services.store.keys), services.issuers, services.config)
    served = reader.get("auth", SHARD)  # read number 3; publication 4 replaced CRL 3 before it was read
    assert served.number == 4 and services.crl.version("auth", SHARD).number == 4  # read again, not republished
    assert x509.load_der_x509_crl(served.der).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 4


# --- what relying parties see -------------------------------------------------------------------------------


def test_openssl_accepts_incremental_crls_and_combines_the_base_with_the_delta(revocation_services, issue_card,
                                                                               dev_ca, tmp_path):
    services = revocation_services
    lost, compromised, found, good = (issue_card() for _ in range(4))
    apply(services, found, "card_lost", "2026-02-01T00:00:00Z")
    publisher = counting_publisher(services)
    shards = {crl_shard(card["auth"].serial_number) for card in (lost, compromised, found, good)}
    for shard in shards:
        publisher.publish("auth", shard, rebase=True)
    bases = {shard: x509.load_der_x509_crl(services.crl.get("auth", shard).der) for shard in shards}

    apply(services, lost, "card_lost", "2026-02-02T00:00:00Z")
    apply(services, compromised, "key_compromised", "2026-02-02T00:00:00Z")
    apply(services, found, "card_found", "2026-02-03T00:00:00Z")
    for shard in shards:
        publisher.publish("auth", shard)
    assert publisher.store.full_reads == len(shards)  # the changes came from the log

    ca = dev_ca.auth.certificate
    ca_pem = pem(tmp_path, "auth-ca.pem", ca)
    for shard in shards:
        for delta in (False, True):
            path = tmp_path / f"{shard}-{delta}.crl"
            path.write_bytes(services.crl.get("auth", shard, delta=delta).der)
            result = openssl("crl", "-inform", "DER", "-in", str(path), "-CAfile", ca_pem, "-noout")
            assert result.returncode == 0 and "verify OK" in result.stdout + result.stderr

    def verify(card, delta: bool):
        shard = crl_shard(card["auth"].serial_number)
        published = services.crl.get("auth", shard, delta=delta)
        crl = bases[shard] if delta else x509.load_der_x509_crl(published.der)
        return openssl_verify(tmp_path, ca, crl, card["auth"],
                              delta=x509.load_der_x509_crl(published.der) if delta else None)

    for delta in (False, True):  # the incremental complete CRL alone, and the old base with the delta
        for card in (lost, compromised):
            refused = verify(card, delta)
            assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
        for card in (found, good):
            accepted = verify(card, delta)
            assert accepted.returncode == 0, accepted.stdout + accepted.stderr

"""Events → certificate status, against a real Redis: each row of docs/jpki-profile.md §4, order, idempotency, links."""

import itertools

import pytest
from cryptography.x509 import ReasonFlags

from revocation.domain.applier import Applier
from revocation.domain.events import parse_event
from revocation.storage.keys import KeySpace
from revocation.storage.store import CertificateStatus, StatusStore

GOOD, REVOKED, HELD = CertificateStatus.GOOD, CertificateStatus.REVOKED, CertificateStatus.ON_HOLD
_ids = itertools.count()


@pytest.fixture
def store(redis_client):
    return StatusStore(redis_client, KeySpace(1024, 1024))


@pytest.fixture
def applier(store):
    return Applier(store)


class Holder:
    """One holder's card with an auth (0xA…) and a signing (0x5…) certificate, and a way to send events."""

    def __init__(self, applier, name="h1", card="card-1", auth=0xA001, signing=0x5001):
        self.applier, self.name, self.card, self.auth, self.signing = applier, name, card, auth, signing
        self.send("certificate_issued", "2026-01-01T00:00:00Z", card_id=card, certificates=[
            {"serial": f"{auth:X}", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"},
            {"serial": f"{signing:X}", "kind": "signing", "not_after": "2031-01-01T00:00:00Z"}])

    def send(self, type_, at, event_id=None, **fields):
        event = parse_event({"event_id": event_id or f"e{next(_ids)}", "type": type_, "holder": self.name,
                             "occurred_at": at, "source": "test", **fields})
        return self.applier.apply(event)

    def status(self):
        store = self.applier.store
        auth, signing = store.get("auth", self.auth), store.get("signing", self.signing)
        return (auth.status, auth.reason), (signing.status, signing.reason)


@pytest.fixture
def holder(applier):
    return Holder(applier)


def test_issuance_registers_good_certificates_with_the_auth_signing_link(holder, store):
    assert holder.status() == ((GOOD, None), (GOOD, None))
    assert store.get("signing", holder.signing).auth_serial == holder.auth
    assert store.get("auth", holder.auth).auth_serial is None


@pytest.mark.parametrize(("event_type", "fields", "auth", "signing"), [
    ("four_facts_changed", {"changed": ["name"]}, (GOOD, None), (REVOKED, ReasonFlags.affiliation_changed)),
    ("moved_abroad", {}, (GOOD, None), (REVOKED, ReasonFlags.affiliation_changed)),
    ("died", {}, (REVOKED, ReasonFlags.cessation_of_operation), (REVOKED, ReasonFlags.cessation_of_operation)),
    ("card_returned", {"card_id": "card-1"}, (REVOKED, ReasonFlags.cessation_of_operation),
     (REVOKED, ReasonFlags.cessation_of_operation)),
    ("revocation_requested", {"card_id": "card-1"}, (REVOKED, ReasonFlags.cessation_of_operation),
     (REVOKED, ReasonFlags.cessation_of_operation)),
    ("key_compromised", {"card_id": "card-1"}, (REVOKED, ReasonFlags.key_compromise),
     (REVOKED, ReasonFlags.key_compromise)),
    ("record_error", {"card_id": "card-1"}, (REVOKED, ReasonFlags.unspecified), (REVOKED, ReasonFlags.unspecified)),
    ("card_lost", {"card_id": "card-1"}, (HELD, ReasonFlags.certificate_hold), (HELD, ReasonFlags.certificate_hold)),
])
def test_policy_table_row(holder, event_type, fields, auth, signing):
    holder.send(event_type, "2026-03-01T00:00:00Z", **fields)
    assert holder.status() == (auth, signing)


def test_moved_abroad_can_be_set_to_revoke_auth_too(store):
    holder = Holder(Applier(store, moved_abroad_revokes_auth=True))
    holder.send("moved_abroad", "2026-03-01T00:00:00Z")
    assert holder.status() == ((REVOKED, ReasonFlags.affiliation_changed), (REVOKED, ReasonFlags.affiliation_changed))


def test_card_found_lifts_the_hold(holder, store):
    holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1")
    outcome = holder.send("card_found", "2026-03-02T00:00:00Z", card_id="card-1")
    assert outcome.changes == {"released": 2}
    assert holder.status() == ((GOOD, None), (GOOD, None))
    assert [h["do"] for h in store.history("auth", holder.auth)] == ["hold", "release"]


def test_a_card_event_touches_only_its_card_and_kinds(applier):
    holder = Holder(applier)
    other = Holder(applier, name="h1", card="card-2", auth=0xA002, signing=0x5002)  # a phone of the same holder
    stranger = Holder(applier, name="h2", card="card-9", auth=0xA009, signing=0x5009)
    holder.send("revocation_requested", "2026-03-01T00:00:00Z", card_id="card-1", kinds=["signing"])
    assert holder.status() == ((GOOD, None), (REVOKED, ReasonFlags.cessation_of_operation))
    assert other.status() == ((GOOD, None), (GOOD, None))
    assert stranger.status() == ((GOOD, None), (GOOD, None))


def test_a_holder_event_touches_every_card_of_that_holder(applier):
    card = Holder(applier)
    phone = Holder(applier, name="h1", card="phone-1", auth=0xA002, signing=0x5002)
    card.send("four_facts_changed", "2026-03-01T00:00:00Z", changed=["address"])
    assert card.status()[1][0] is REVOKED and phone.status()[1][0] is REVOKED
    assert card.status()[0][0] is GOOD and phone.status()[0][0] is GOOD


def test_an_unknown_card_changes_nothing_and_says_so(holder):
    outcome = holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-x")
    assert outcome.changes == {} and "unknown card" in outcome.note
    assert holder.status() == ((GOOD, None), (GOOD, None))


def test_the_same_event_twice_has_one_effect(holder, store):
    first = holder.send("card_lost", "2026-03-01T00:00:00Z", event_id="lost-1", card_id="card-1")
    holder.send("card_found", "2026-03-02T00:00:00Z", card_id="card-1")
    again = holder.send("card_lost", "2026-03-01T00:00:00Z", event_id="lost-1", card_id="card-1")
    assert first.changes == {"held": 2} and again.duplicate and again.changes == {}
    assert holder.status() == ((GOOD, None), (GOOD, None))
    assert [h["do"] for h in store.history("auth", holder.auth)] == ["hold", "release"]


def test_a_late_older_card_lost_does_not_undo_a_newer_card_found(holder):
    holder.send("card_found", "2026-03-02T00:00:00Z", card_id="card-1")
    holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1")
    assert holder.status() == ((GOOD, None), (GOOD, None))


def test_a_late_older_card_found_does_not_lift_a_newer_card_lost_on_a_held_card(holder, store):
    holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1", kinds=["signing"])
    holder.send("card_lost", "2026-03-05T00:00:00Z", card_id="card-1")  # the signing one is held already
    holder.send("card_found", "2026-03-03T00:00:00Z", card_id="card-1")  # older than the second loss
    assert holder.status() == ((HELD, ReasonFlags.certificate_hold), (HELD, ReasonFlags.certificate_hold))
    assert store.get("signing", holder.signing).revoked_at.isoformat().startswith("2026-03-01")  # the first hold
    assert [h["do"] for h in store.history("signing", holder.signing)] == ["hold"]


def test_card_found_after_card_returned_lifts_nothing(holder):
    holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1")
    holder.send("card_returned", "2026-03-02T00:00:00Z", card_id="card-1")
    holder.send("card_found", "2026-03-03T00:00:00Z", card_id="card-1")
    assert holder.status()[0] == (REVOKED, ReasonFlags.cessation_of_operation)


def test_card_found_arriving_before_an_older_card_returned_cannot_restore(holder):
    holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1")
    holder.send("card_found", "2026-03-05T00:00:00Z", card_id="card-1")
    holder.send("card_returned", "2026-03-03T00:00:00Z", card_id="card-1")  # late, older, final
    assert holder.status()[0][0] is REVOKED


def test_nothing_after_death_revokes_or_restores(holder, store):
    holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1")
    holder.send("died", "2026-03-02T00:00:00Z")
    found = holder.send("card_found", "2026-03-03T00:00:00Z", card_id="card-1")
    assert found.changes == {} and "death" in found.note
    assert holder.status()[0] == (REVOKED, ReasonFlags.cessation_of_operation)


def test_an_issuance_after_death_registers_nothing(holder, store):
    holder.send("died", "2026-03-02T00:00:00Z")
    outcome = holder.send("certificate_issued", "2026-04-01T00:00:00Z", card_id="card-2", certificates=[
        {"serial": "A0FF", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"}])
    assert outcome.changes == {} and store.get("auth", 0xA0FF) is None


def test_death_reported_late_still_revokes_but_later_events_stay_ignored(holder):
    holder.send("card_lost", "2026-03-05T00:00:00Z", card_id="card-1")  # after the death, arrived first
    holder.send("died", "2026-03-01T00:00:00Z")
    assert holder.status()[0][0] is REVOKED


def test_renewal_supersedes_the_old_and_links_both_ways(holder, store):
    outcome = holder.send("certificate_renewed", "2026-06-01T00:00:00Z", card_id="card-1", renewals=[
        {"kind": "auth", "old_serial": f"{holder.auth:X}", "new_serial": "A101", "not_after": "2036-01-01T00:00:00Z"},
        {"kind": "signing", "old_serial": f"{holder.signing:X}", "new_serial": "5101",
         "not_after": "2036-01-01T00:00:00Z"}])
    assert outcome.changes == {"registered": 2, "revoked": 2}
    assert holder.status() == ((REVOKED, ReasonFlags.superseded), (REVOKED, ReasonFlags.superseded))
    assert store.get("auth", 0xA101).status is GOOD
    assert store.links("auth", holder.auth) == (None, 0xA101)
    assert store.links("auth", 0xA101) == (holder.auth, None)
    assert store.latest("auth", holder.auth) == 0xA101 and store.first("auth", 0xA101) == holder.auth
    assert store.get("signing", 0x5101).auth_serial == 0xA101
    later = holder.send("card_lost", "2026-07-01T00:00:00Z", card_id="card-1")
    assert later.changes == {"held": 2}
    assert store.get("auth", 0xA101).status is HELD


def test_renewal_chains_are_followed_to_the_end(holder, store):
    serial = holder.auth
    for step in range(3):
        new = 0xB000 + step
        holder.send("certificate_renewed", f"2027-0{step + 1}-01T00:00:00Z", card_id="card-1", renewals=[
            {"kind": "auth", "old_serial": f"{serial:X}", "new_serial": f"{new:X}",
             "not_after": "2036-01-01T00:00:00Z"}])
        serial = new
    assert store.latest("auth", holder.auth) == 0xB002
    assert store.first("auth", 0xB002) == holder.auth


def test_revocation_is_final_and_keeps_its_first_reason(holder, store):
    holder.send("key_compromised", "2026-03-01T00:00:00Z", card_id="card-1")
    holder.send("card_lost", "2026-03-02T00:00:00Z", card_id="card-1")
    holder.send("revocation_requested", "2026-03-03T00:00:00Z", card_id="card-1")
    assert holder.status()[0] == (REVOKED, ReasonFlags.key_compromise)
    assert store.get("auth", holder.auth).revoked_at.isoformat().startswith("2026-03-01")


def test_crl_index_follows_status(holder, store):
    shard = store.get("auth", holder.auth).shard
    holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1")
    assert [s for s, _, _ in store.crl_entries("auth", shard)] == [holder.auth]
    holder.send("card_found", "2026-03-02T00:00:00Z", card_id="card-1")
    assert list(store.crl_entries("auth", shard)) == []
    assert [s for s, _ in store.crl_released("auth", shard)] == [holder.auth]
    assert store.redis.sismember("rv:crl:dirty", f"auth:{shard}")


def test_listeners_hear_every_change(store):
    heard = []
    holder = Holder(Applier(store, listeners=(lambda issuer, serial, record: heard.append((issuer, record.status)),)))
    holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1")
    assert sorted(heard) == [("auth", HELD), ("signing", HELD)]


def test_outcomes_never_mention_serials_or_holders(holder):
    outcome = holder.send("card_lost", "2026-03-01T00:00:00Z", card_id="card-1")
    shown = str(outcome.as_dict())
    assert f"{holder.auth:X}" not in shown and "h1" not in shown.replace("held", "")


def test_a_renewal_of_a_certificate_never_issued_is_refused_and_records_nothing(holder, store):
    from revocation.domain.events import EventRefused

    renewal = {"card_id": "card-1", "renewals": [
        {"kind": "auth", "old_serial": "AFFF", "new_serial": "A101", "not_after": "2036-01-01T00:00:00Z"}]}
    with pytest.raises(EventRefused) as info:
        holder.send("certificate_renewed", "2026-06-01T00:00:00Z", event_id="renew-ghost", **renewal)
    assert info.value.code == "unknown_old_serial" and "AFFF" not in info.value.message
    assert store.get("auth", 0xA101) is None and store.links("auth", 0xA101) == (None, None)
    # Once the old certificate is registered, the same event (same id) applies: the refusal recorded nothing.
    holder.send("certificate_issued", "2026-01-01T00:00:00Z", card_id="card-0", certificates=[
        {"serial": "AFFF", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"}])
    outcome = holder.send("certificate_renewed", "2026-06-01T00:00:00Z", event_id="renew-ghost", **renewal)
    assert outcome.changes == {"registered": 1, "revoked": 1}
    assert store.get("auth", 0xAFFF).reason is ReasonFlags.superseded


def test_a_renewal_refused_for_one_kind_changes_neither(holder, store):
    from revocation.domain.events import EventRefused

    with pytest.raises(EventRefused):
        holder.send("certificate_renewed", "2026-06-01T00:00:00Z", card_id="card-1", renewals=[
            {"kind": "auth", "old_serial": f"{holder.auth:X}", "new_serial": "A101",
             "not_after": "2036-01-01T00:00:00Z"},
            {"kind": "signing", "old_serial": "5FFF", "new_serial": "5101", "not_after": "2036-01-01T00:00:00Z"}])
    assert holder.status() == ((GOOD, None), (GOOD, None)) and store.get("auth", 0xA101) is None

"""mykey against a real redis-server: serial → account → MyKey ID, renewals, pairwise subjects, consent, access log."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import secrets
import threading

import pytest
import redis

from deploy.composition import StatusStoreRecords
from mykey.consent import ConsentStore
from mykey.directory import (
    GENERATED_ALPHABET,
    MyKeyDirectory,
    MyKeyIdError,
    MyKeyIdInvalid,
    MyKeyIdTaken,
    UnknownAccount,
)
from mykey.pairwise import pairwise_subject, sector_of
from mykey.record import RECORD_LENGTH, AccessRecord, holder_key
from revocation.storage.keys import KeySpace
from revocation.storage.store import StatusStore

ISSUER = "JPKI-auth-CA-test"
NOW = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.UTC)
SECRET = b"mykey-serial-test-secret-32bytes"
SUB_SECRET = b"pairwise-sub-test-secret-32bytes"


class FakeRenewalLinks:
    """Stands in for the revocation service's 新旧紐付け: new serial → the serial it replaced."""

    def __init__(self):
        self.replaced: dict[int, int] = {}

    def renew(self, old: int, new: int) -> None:
        self.replaced[new] = old

    def previous(self, issuer: str, serial: int) -> int | None:
        return self.replaced.get(serial)


def new_serial() -> int:
    return secrets.randbits(64) | 1 << 63  # 16 hex digits, 19-20 decimal: never found in a value by chance


@pytest.fixture
def links() -> FakeRenewalLinks:
    return FakeRenewalLinks()


@pytest.fixture
def directory(redis_client, links) -> MyKeyDirectory:
    return MyKeyDirectory(redis_client, SECRET, links)


def stored_items(client: redis.Redis) -> list[bytes]:
    """Every key and every value in the database, as bytes."""
    items = []
    for key in client.scan_iter(count=1000):
        items.append(key)
        kind = client.type(key)
        if kind == b"string":
            items.append(client.get(key))
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                items += [field, value]
        elif kind == b"list":
            items += client.lrange(key, 0, -1)
        elif kind == b"set":
            items += list(client.smembers(key))
        else:
            raise AssertionError(f"unexpected key type {kind!r}")
    return items


# --- certificates → accounts -------------------------------------------------------------------------------------


def test_first_login_creates_an_account_with_a_generated_mykey_id(directory):
    account = directory.resolve(ISSUER, new_serial(), NOW)

    assert len(account.mykey_id) == 8
    assert set(account.mykey_id) <= set(GENERATED_ALPHABET)
    assert not set(account.mykey_id) & set("0O1IL")
    assert re.fullmatch(r"[0-9a-f]{32}", account.account_id)  # 128 random bits
    assert account.created_at == NOW.replace(day=1, hour=0, minute=0, second=0)  # the month only: no login time
    assert directory.get(account.account_id) == account


def test_same_certificate_resolves_to_the_same_account(directory):
    serial = new_serial()
    first = directory.resolve(ISSUER, serial, NOW)
    again = directory.resolve(ISSUER, serial, NOW + dt.timedelta(days=30))

    assert again == first


def test_renewed_certificate_lands_on_the_same_account_and_mykey_id(directory, links):
    old, middle, new = new_serial(), new_serial(), new_serial()
    original = directory.resolve(ISSUER, old, NOW)
    links.renew(old, middle)
    links.renew(middle, new)  # the holder never logged in with the middle certificate

    renewed = directory.resolve(ISSUER, new, NOW + dt.timedelta(days=1900))

    assert renewed == original
    assert directory.resolve(ISSUER, middle, NOW) == original


def test_renewal_is_followed_through_the_revocation_status_store(redis_client):
    store = StatusStore(redis_client, KeySpace(status_buckets=1024, holder_buckets=1024))
    directory = MyKeyDirectory(redis_client, SECRET, StatusStoreRecords(store))
    old, new = new_serial(), new_serial()
    original = directory.resolve(ISSUER, old, NOW)
    store.link_renewal(ISSUER, old, new)

    assert directory.resolve(ISSUER, new, NOW) == original


def test_renewal_chain_is_followed_only_a_bounded_number_of_steps(directory, links):
    serials = [new_serial() for _ in range(40)]
    original = directory.resolve(ISSUER, serials[0], NOW)
    for old, new in itertools.pairwise(serials):
        links.renew(old, new)

    assert directory.resolve(ISSUER, serials[-1], NOW) != original  # 39 steps back: beyond the bound of 32
    assert directory.resolve(ISSUER, serials[20], NOW) == original


def test_different_holders_get_different_accounts_and_mykey_ids(directory):
    accounts = [directory.resolve(ISSUER, new_serial(), NOW) for _ in range(50)]

    assert len({a.account_id for a in accounts}) == 50
    assert len({a.mykey_id for a in accounts}) == 50


def test_the_same_serial_under_another_issuer_is_another_certificate(directory):
    serial = new_serial()

    assert directory.resolve(ISSUER, serial, NOW) != directory.resolve("another-CA", serial, NOW)


def test_concurrent_first_logins_of_one_card_end_on_one_account(directory, redis_client):
    serial = new_serial()
    start = threading.Barrier(16)
    results = []

    def login():
        start.wait()
        results.append(directory.resolve(ISSUER, serial, NOW))

    threads = [threading.Thread(target=login) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 16
    assert len({a.account_id for a in results}) == 1
    assert len({a.mykey_id for a in results}) == 1
    # The losers dropped the accounts they had made, and gave back the IDs those had reserved.
    assert len(list(redis_client.scan_iter("mk:acct:*"))) == 1
    assert len(list(redis_client.scan_iter("mk:id:*"))) == 1


def test_no_serial_is_stored_in_clear(directory, links, redis_client):
    old, new = new_serial(), new_serial()
    account = directory.resolve(ISSUER, old, NOW)
    links.renew(old, new)
    directory.resolve(ISSUER, new, NOW)
    directory.set_custom_id(account.account_id, "taro_2026")
    ConsentStore(redis_client, SECRET).grant(account.account_id, "rp_shop", ["openid", "profile"], NOW)
    AccessRecord(redis_client, SECRET).record(account.account_id, "cert", "rp_shop", ["openid", "profile"], NOW)

    items = stored_items(redis_client)
    assert len(items) > 8
    for serial in (old, new):
        forms = [f"{serial:x}".encode(), f"{serial:X}".encode(), str(serial).encode(),
                 serial.to_bytes(8, "big"), serial.to_bytes(20, "big")]
        for item in items:
            for form in forms:
                assert form not in item


def test_serial_out_of_range_is_refused_without_echoing_it(directory):
    huge = 1 << 170
    with pytest.raises(ValueError) as refused:
        directory.resolve(ISSUER, huge, NOW)
    assert str(huge) not in str(refused.value) and f"{huge:x}" not in str(refused.value).lower()


def test_account_repr_shows_neither_identifier(directory):
    account = directory.resolve(ISSUER, new_serial(), NOW)

    assert account.account_id not in repr(account)
    assert account.mykey_id not in repr(account)


def test_directory_works_with_a_decoding_client(redis_server, links):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    directory = MyKeyDirectory(client, SECRET, links)
    serial = new_serial()
    account = directory.resolve(ISSUER, serial, NOW)

    assert directory.set_custom_id(account.account_id, "Hanako-01").mykey_id == "Hanako-01"
    assert directory.resolve(ISSUER, serial, NOW).mykey_id == "Hanako-01"
    client.close()


# --- MyKey IDs ---------------------------------------------------------------------------------------------------


def test_holder_sets_a_custom_mykey_id_and_the_old_one_is_released(directory):
    serial = new_serial()
    account = directory.resolve(ISSUER, serial, NOW)
    generated = account.mykey_id

    changed = directory.set_custom_id(account.account_id, "Taro_Yamada")

    assert changed.mykey_id == "Taro_Yamada"
    assert changed.account_id == account.account_id
    assert directory.resolve(ISSUER, serial, NOW).mykey_id == "Taro_Yamada"
    other = directory.resolve(ISSUER, new_serial(), NOW)
    assert directory.set_custom_id(other.account_id, generated).mykey_id == generated


def test_custom_mykey_id_is_unique_whatever_the_case(directory):
    first = directory.resolve(ISSUER, new_serial(), NOW)
    second = directory.resolve(ISSUER, new_serial(), NOW)
    directory.set_custom_id(first.account_id, "sakura-2026")

    with pytest.raises(MyKeyIdTaken) as taken:
        directory.set_custom_id(second.account_id, "SAKURA-2026")

    assert taken.value.code == "mykey_id_taken"
    assert isinstance(taken.value, MyKeyIdError)
    assert directory.get(second.account_id).mykey_id == second.mykey_id  # nothing half-written
    third = directory.resolve(ISSUER, new_serial(), NOW)
    with pytest.raises(MyKeyIdTaken):
        directory.set_custom_id(second.account_id, third.mykey_id.lower())  # a generated one is taken just the same


def test_holder_may_change_the_case_of_their_own_mykey_id(directory):
    account = directory.resolve(ISSUER, new_serial(), NOW)
    directory.set_custom_id(account.account_id, "sakura-2026")

    assert directory.set_custom_id(account.account_id, "Sakura-2026").mykey_id == "Sakura-2026"
    with pytest.raises(MyKeyIdTaken):
        directory.set_custom_id(directory.resolve(ISSUER, new_serial(), NOW).account_id, "sakura-2026")


@pytest.mark.parametrize("wanted", [
    "abc12",  # too short
    "a" * 33,  # too long
    "taro yamada",
    "taro@home",
    "ｔａｒｏｙａｍａｄａ",  # full-width letters
    "山田太郎さん",
    "123456",  # all digits
    "2026-01-01",  # no letter
    "______",
    "123456789012",  # a My Number
    "id123456789012",  # a My Number inside
    "1234-5678-9012x",  # a My Number written with separators
    "",
])
def test_invalid_custom_mykey_ids_are_refused_without_echo(directory, wanted):
    account = directory.resolve(ISSUER, new_serial(), NOW)

    with pytest.raises(MyKeyIdInvalid) as refused:
        directory.set_custom_id(account.account_id, wanted)

    assert refused.value.code == "mykey_id_invalid"
    assert not wanted or wanted not in str(refused.value)
    assert directory.get(account.account_id).mykey_id == account.mykey_id


def test_give_up_then_issue_a_new_generated_id(directory, redis_client):
    serial = new_serial()
    account = directory.resolve(ISSUER, serial, NOW)
    directory.set_custom_id(account.account_id, "kaede_k")

    released = directory.give_up(account.account_id)

    assert released.mykey_id is None
    assert directory.resolve(ISSUER, serial, NOW).mykey_id is None  # the account keeps working
    assert list(redis_client.scan_iter("mk:id:*")) == []
    assert directory.give_up(account.account_id).mykey_id is None  # idempotent
    other = directory.resolve(ISSUER, new_serial(), NOW)
    assert directory.set_custom_id(other.account_id, "KAEDE_K").mykey_id == "KAEDE_K"

    fresh = directory.issue_new_id(account.account_id)
    assert len(fresh.mykey_id) == 8 and set(fresh.mykey_id) <= set(GENERATED_ALPHABET)
    assert directory.issue_new_id(account.account_id) == fresh  # an account that has an ID keeps it
    assert directory.resolve(ISSUER, serial, NOW).account_id == account.account_id


def test_unknown_account_cannot_take_an_id(directory, redis_client):
    with pytest.raises(UnknownAccount):
        directory.set_custom_id("0" * 32, "nobody_here")
    with pytest.raises(UnknownAccount):
        directory.give_up("0" * 32)
    assert directory.get("0" * 32) is None


# --- pairwise subjects -------------------------------------------------------------------------------------------


def test_pairwise_sub_is_stable_per_sector_and_differs_between_sectors(directory):
    account = directory.resolve(ISSUER, new_serial(), NOW)
    other = directory.resolve(ISSUER, new_serial(), NOW)

    shop = pairwise_subject(SUB_SECRET, "shop.example", account.account_id)
    bank = pairwise_subject(SUB_SECRET, "bank.example", account.account_id)

    assert shop == pairwise_subject(SUB_SECRET, "shop.example", account.account_id)
    assert shop == pairwise_subject(SUB_SECRET, "SHOP.example", account.account_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", shop)  # 256 bits, base64url without padding
    assert shop != bank
    assert shop != pairwise_subject(SUB_SECRET, "shop.example", other.account_id)
    assert shop != pairwise_subject(b"another-secret-of-32-bytes-long!", "shop.example", account.account_id)
    # Unlinkable-looking: no shared prefix, and nothing of the account in either value.
    assert shop[:4] != bank[:4]
    for sub in (shop, bank):
        assert account.account_id not in sub and account.mykey_id not in sub


def test_pairwise_sub_survives_mykey_id_change_give_up_and_renewal(directory, links):
    old, new = new_serial(), new_serial()
    account = directory.resolve(ISSUER, old, NOW)
    before = pairwise_subject(SUB_SECRET, "shop.example", account.account_id)

    directory.set_custom_id(account.account_id, "haruki_m")
    after_change = directory.resolve(ISSUER, old, NOW)
    directory.give_up(account.account_id)
    links.renew(old, new)
    after_renewal = directory.resolve(ISSUER, new, NOW)

    for later in (after_change, after_renewal):
        assert pairwise_subject(SUB_SECRET, "shop.example", later.account_id) == before


def test_sector_is_the_one_host_of_the_redirect_uris():
    assert sector_of(["https://shop.example/cb", "https://SHOP.example:8443/other"]) == "shop.example"


def test_sector_identifier_uri_decides_the_sector():
    uris = ["https://a.shop.example/cb", "https://b.shop.example/cb"]

    assert sector_of(uris, "https://shop.example/sector.json") == "shop.example"


def test_several_hosts_without_sector_identifier_uri_are_refused():
    with pytest.raises(ValueError, match="sector_identifier_uri"):
        sector_of(["https://a.shop.example/cb", "https://b.shop.example/cb"])


@pytest.mark.parametrize("uris", [[], ["urn:no-host"], ["/relative/cb"]])
def test_redirect_uris_without_a_host_give_no_sector(uris):
    with pytest.raises(ValueError):
        sector_of(uris)


# --- consent and access record -----------------------------------------------------------------------------------

SECRET = b"consent-and-record-test-secret!!"


def test_consent_grant_covers_and_withdraw(redis_client):
    consents = ConsentStore(redis_client, SECRET)
    account = secrets.token_hex(16)

    assert consents.get(account, "rp_shop") is None
    assert not consents.covers(account, "rp_shop", ["openid"])
    granted = consents.grant(account, "rp_shop", ["openid", "profile"], NOW)

    assert granted.scopes == ("openid", "profile") and granted.granted_at is None  # the time is the holder's alone
    assert consents.get(account, "rp_shop") == granted
    assert consents.covers(account, "rp_shop", ["openid"])
    assert consents.covers(account, "rp_shop", ["profile", "openid"])
    assert not consents.covers(account, "rp_shop", ["openid", "address"])
    assert not consents.covers(account, "rp_bank", ["openid"])
    assert not consents.covers(secrets.token_hex(16), "rp_shop", ["openid"])

    assert consents.withdraw(account, "rp_shop")
    assert not consents.withdraw(account, "rp_shop")
    assert not consents.covers(account, "rp_shop", ["openid"])


def test_a_later_grant_adds_scopes(redis_client):
    consents = ConsentStore(redis_client, SECRET)
    account = secrets.token_hex(16)
    consents.grant(account, "rp_shop", ["openid", "profile"], NOW)

    later = consents.grant(account, "rp_shop", ["openid", "address"], NOW + dt.timedelta(hours=1))

    assert later.scopes == ("address", "openid", "profile")


def test_claim_values_are_never_recorded(redis_client):
    account = secrets.token_hex(16)

    with pytest.raises(ValueError):
        ConsentStore(redis_client, SECRET).grant(account, "rp_shop", ["openid", "試験 太郎"], NOW)
    with pytest.raises(ValueError):
        AccessRecord(redis_client, SECRET).record(account, "cert", "rp_shop", ["name", "東京都千代田区"], NOW)
    assert list(redis_client.scan_iter()) == []


def _opened(redis_client, account, key):
    return AccessRecord(redis_client, SECRET).open(account, key, "cert", dt.date(2026, 1, 1), NOW)


def test_the_access_record_lists_newest_first(redis_client):
    record, key = AccessRecord(redis_client, SECRET), holder_key(secrets.token_bytes(256))
    account = secrets.token_hex(16)
    _opened(redis_client, account, key)
    record.record(account, "cert", "rp_shop", ["openid"], NOW)
    record.record(account, "cert", "rp_bank", ["openid", "profile"], NOW + dt.timedelta(minutes=5))

    assert [(e.client_id, e.claims, e.at) for e in _opened(redis_client, account, key).releases] == [
        ("rp_bank", ("openid", "profile"), NOW + dt.timedelta(minutes=5)),
        ("rp_shop", ("openid",), NOW),
    ]


def test_the_access_record_keeps_only_the_latest_entries(redis_client):
    record, key = AccessRecord(redis_client, SECRET), holder_key(secrets.token_bytes(256))
    account = secrets.token_hex(16)
    _opened(redis_client, account, key)
    for minute in range(RECORD_LENGTH + 5):
        record.record(account, "cert", f"rp_{minute}", ["openid"], NOW + dt.timedelta(minutes=minute))

    everything = _opened(redis_client, account, key).releases

    assert len(everything) == RECORD_LENGTH
    assert everything[0].client_id == f"rp_{RECORD_LENGTH + 4}"
    assert everything[-1].client_id == "rp_5"


def test_the_access_record_says_whether_a_card_or_a_phone_was_used(redis_client):
    record, key = AccessRecord(redis_client, SECRET), holder_key(secrets.token_bytes(256))
    account = secrets.token_hex(16)
    _opened(redis_client, account, key)
    record.record(account, "cert", "rp_shop", ["openid"], NOW, token_type="card")
    record.record(account, "cert", "rp_bank", ["openid"], NOW + dt.timedelta(minutes=1), token_type="smartphone")

    assert [e.token_type for e in _opened(redis_client, account, key).releases] == ["smartphone", "card"]
    with pytest.raises(ValueError):
        record.record(account, "cert", "rp_shop", ["openid"], NOW, token_type="スマホ")


def test_a_mapping_read_in_the_callers_pipeline_resolves_to_the_same_account(directory, redis_client):
    serial = new_serial()

    def mapping() -> str | None:
        with redis_client.pipeline(transaction=False) as pipe:
            answer = directory.queue_mapping(pipe, "auth", serial)
            (reply,) = pipe.execute()  # exactly one command queued
        return answer(reply)

    assert mapping() is None  # first login: nothing mapped yet, so resolve claims a new account
    first = directory.resolve("auth", serial, NOW, mapped=None)
    assert mapping() == first.account_id
    assert directory.resolve("auth", serial, NOW, mapped=mapping()) == first == directory.resolve("auth", serial, NOW)

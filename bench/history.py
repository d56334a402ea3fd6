"""The sealed access record's cost: per login (sealing the release) and per view of the record (opening it).

    .venv/bin/python -m bench history

In process, against a real redis-server on loopback, the code paths the IdP runs (mykey/record.py):

- per login: `AccessRecord.record` with the holder's key set up — read the key, HPKE-seal the padded entry
  (X25519 + HKDF-SHA256 + AES-128-GCM), LPUSH/LTRIM/EXPIRE in one transaction — against its peer, what a login
  wrote before the record was sealed: one JSON entry pushed and trimmed in one transaction;
- per view: the key derived from a card signature (HKDF → X25519), then `AccessRecord.open` of a record of 100 and
  of 1000 entries (one HPKE open per entry), against reading the same number of plain JSON entries;
- the card's own part, from the virtual card (an RSA-2048 signature in software): a real card over NFC takes
  about a second for it, which dwarfs the rest.

Each figure is the median of bounded repetitions (count and time); nothing here is part of `make test`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import statistics
import time
from pathlib import Path

import redis

from bench.harness import RedisServer, Result
from idp.login.verification import CARD
from jpki.devca import DevCA
from jpki.profile import CertificateKind
from jpki.signature import history_message
from mykey.record import AccessRecord, holder_key
from nfc_bridge.card_file import Holder, new_card_state, write_card_file
from nfc_bridge.client import JpkiClient
from nfc_bridge.readers import open_reader

LOGINS = 2_000
VIEWS = 20
MAX_SECONDS = 30  # per measured loop
NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


def _median_us(action, count: int) -> float:
    samples, deadline = [], time.monotonic() + MAX_SECONDS
    for _ in range(count):
        began = time.perf_counter()
        action()
        samples.append((time.perf_counter() - began) * 1e6)
        if time.monotonic() > deadline:
            break
    return round(statistics.median(samples), 1)


def _plain_push(client: redis.Redis, account: str, counter: list[int]) -> None:
    """What a login wrote before: one JSON entry, pushed and trimmed in one transaction."""
    counter[0] += 1
    entry = json.dumps({"client_id": f"rp_{counter[0] % 7}", "claims": ["openid"], "at": int(NOW.timestamp()),
                        "token_type": CARD}, separators=(",", ":"))
    with client.pipeline(transaction=True) as pipe:
        pipe.lpush(f"bench:plain:{account}", entry)
        pipe.ltrim(f"bench:plain:{account}", 0, 999)
        pipe.execute()


def run(workdir: Path) -> list[Result]:
    with RedisServer(workdir / "redis") as server:
        client = redis.Redis.from_url(server.url)
        record = AccessRecord(client, secrets.token_bytes(32))
        signature = secrets.token_bytes(256)
        key = holder_key(signature)
        account, certificate = secrets.token_hex(16), "bench-certificate"
        record.open(account, key, certificate, NOW.date(), NOW)

        counter = [0]
        sealed_us = _median_us(lambda: record.record(account, certificate, f"rp_{counter[0] % 7}", ["openid"], NOW,
                                                     token_type=CARD), LOGINS)
        plain_us = _median_us(lambda: _plain_push(client, account, counter), LOGINS)

        derive_us = _median_us(lambda: holder_key(signature), LOGINS)
        views = {}
        for size in (100, 1000):
            viewer = secrets.token_hex(16)
            record.open(viewer, key, certificate, NOW.date(), NOW)
            for index in range(size):
                record.record(viewer, certificate, f"rp_{index % 7}", ["openid"], NOW, token_type=CARD)
                _plain_push(client, viewer, counter)
            opened_us = _median_us(lambda viewer=viewer: record.open(viewer, key, certificate, NOW.date(), NOW), VIEWS)
            plain = f"bench:plain:{viewer}"
            read_us = _median_us(lambda plain=plain: [json.loads(raw) for raw in client.lrange(plain, 0, -1)], VIEWS)
            views[size] = (opened_us, read_us)
        client.close()

    ca = DevCA.load_or_create(workdir / "pki")
    card = workdir / "card.json"
    write_card_file(card, new_card_state(ca, "1234", "ABC123", Holder(), False, None))
    with open_reader("virtual", card, None) as transport:
        jpki = JpkiClient.connect(transport)
        jpki.verify_pin(CertificateKind.AUTH, "1234")
        card_us = _median_us(lambda: jpki.sign(CertificateKind.AUTH, history_message("https://bench"), ""), VIEWS)

    results = [Result(
        id="history-seal-per-login", title="Access record: writing one release per login (µs, median)",
        figures={"ours": {"sealed_us": sealed_us}, "peer": {"plain_json_us": plain_us}},
        ratio=round(sealed_us / plain_us, 2) if plain_us else None,
        ratio_meaning="sealed (HPKE to the holder's key, key read first) / plain JSON push, per login",
        notes=[f"{LOGINS} writes each against redis-server on loopback; the sealed path reads the holder's key "
               "(one more round trip) and seals a 256-octet padded entry"])]
    for size, (opened_us, read_us) in views.items():
        results.append(Result(
            id=f"history-open-{size}", title=f"Access record: one view of {size} entries (µs, median)",
            figures={"ours": {"derive_key_us": derive_us, "open_us": opened_us,
                              "virtual_card_signature_us": card_us},
                     "peer": {"plain_read_us": read_us}},
            ratio=round((derive_us + opened_us) / read_us, 2) if read_us else None,
            ratio_meaning="(key derivation + opening the sealed record) / reading the same entries in clear",
            notes=["a real card's RSA signature over NFC takes about a second and is not included in the ratio"]))
    return results

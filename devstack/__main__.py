"""`make run`: the platform on its embedded default, all on loopback, state under `var/`.

Starts (or reuses) what exists so far and says what it started:
- a private redis-server with its data in var/redis (unless REDIS_URL points at an existing server or cluster);
- the development CA in var/pki (created on first run);
- a virtual My Number Card in var/cards/demo.json (created on first run; auth PIN 1234, signing PIN ABC123).
Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import redis

from devstack.redis_server import RedisServer
from jpki.devca import DEFAULT_REVOCATION_URL, DevCA
from jpki.profile import CertificateKind
from nfc_bridge.virtual_card import VirtualCard, new_card_state, write_card_file

DEMO_AUTH_PIN = "1234"
DEMO_SIGN_PIN = "ABC123"


def main() -> int:
    var = Path(os.environ.get("MYKEY_VAR", "var"))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())

    redis_url = os.environ.get("REDIS_URL")
    server = None
    if redis_url:
        redis.Redis.from_url(redis_url).ping()
        print(f"redis     using REDIS_URL ({_without_password(redis_url)})")
    else:
        server = RedisServer(var / "redis", port=int(os.environ.get("MYKEY_REDIS_PORT", "6390")), persist=True)
        server.start()
        redis_url = server.url
        print(f"redis     started {redis_url} (data in {var / 'redis'})")

    try:
        ca = DevCA.load_or_create(var / "pki", os.environ.get("REVOCATION_URL", DEFAULT_REVOCATION_URL))
        print(f"dev CA    {var / 'pki'} (auth and signing roots, OCSP responders; DEVELOPMENT ONLY)")
        card_path = var / "cards" / "demo.json"
        if not card_path.exists():
            card_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_card_file(card_path, new_card_state(ca, DEMO_AUTH_PIN, DEMO_SIGN_PIN))
            print(f"card      created virtual My Number Card {card_path} "
                  f"(auth PIN {DEMO_AUTH_PIN}, signing PIN {DEMO_SIGN_PIN})")
        card = VirtualCard.load(card_path)
        print(f"card      {card_path}: auth PIN tries left {card.tries_left(CertificateKind.AUTH)}")
        print(f"try       .venv/bin/python -m nfc_bridge card show --reader virtual --card {card_path}")
        print("running   press Ctrl-C to stop")
        sys.stdout.flush()
        try:
            stopping.wait()
        except KeyboardInterrupt:
            pass
    finally:
        if server:
            server.stop()
            print("\nredis     stopped")
    return 0


def _without_password(url: str) -> str:
    parsed = redis.connection.parse_url(url)
    return f"{parsed.get('host', '?')}:{parsed.get('port', '?')}"


if __name__ == "__main__":
    sys.exit(main())

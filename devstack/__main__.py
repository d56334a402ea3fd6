"""`make run`: the platform on its embedded default, all on loopback, state under `var/`.

Starts, and says what it started:
- a private redis-server with its data in var/redis (unless REDIS_URL points at an existing server or cluster);
- the development CA in var/pki (created on first run);
- the revocation service (OCSP, CRLs, operator API) and its worker (event stream, CRL publication);
- the IdP (OpenID Provider with My Number Card login) and its signals worker (SSF events, back-channel logout);
- the demo relying party "Example Shop", registered as an OIDC client on first run, subscribed to the IdP's
  signals (so revoking the card in the console logs it out of the shop);
- a virtual My Number Card in var/cards/demo.json, issued and registered on first run (auth PIN 1234,
  signing PIN ABC123).
Ctrl-C (or SIGTERM) stops everything; state persists under var/ between runs. It runs in development
(MYKEY_DEV=1, set here for every part): loopback URLs and the dev CA, never a production shape.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import redis

from devstack.http import LiveServer
from devstack.redis_server import RedisServer
from jpki.devca import DevCA
from jpki.profile import CertificateKind
from nfc_bridge.card_file import new_card_state, write_card_file
from nfc_bridge.virtual_card import VirtualCard

DEMO_AUTH_PIN = "1234"
DEMO_SIGN_PIN = "ABC123"


def say(label: str, text: str) -> None:
    print(f"{label:<12}{text}", flush=True)


ENVIRONMENT = """environment (docs/configuration.md has every variable):
  MYKEY_VAR               state directory (default var)
  MYKEY_REDIS_PORT        the private redis-server's port (default 6390); REDIS_URL uses yours instead
  MYKEY_REVOCATION_PORT   the revocation service's port (default 8081)
  MYKEY_IDP_PORT          the IdP's port (default 8080)
  MYKEY_DEMO_RP_PORT      the demo relying party's port (default 8082)
  MYKEY_DEV_TSA_PORT      the development time-stamping authority's port (default 8083)
"""


def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition("\n\n")
    return argparse.ArgumentParser(prog="python -m devstack", description=summary,
                                   epilog=details + "\n" + ENVIRONMENT, formatter_class=argparse.RawTextHelpFormatter)


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)  # --help prints and exits before anything starts
    var = Path(os.environ.get("MYKEY_VAR", "var"))
    revocation_port = int(os.environ.get("MYKEY_REVOCATION_PORT", "8081"))
    idp_port = int(os.environ.get("MYKEY_IDP_PORT", "8080"))
    demo_port = int(os.environ.get("MYKEY_DEMO_RP_PORT", "8082"))
    # One environment for every part, set before any configuration is read.
    os.environ["MYKEY_DEV"] = "1"  # development, whatever the shell says: the dev CA and loopback defaults
    os.environ.setdefault("MYKEY_VAR", str(var))
    os.environ.setdefault("REVOCATION_URL", f"http://127.0.0.1:{revocation_port}")
    os.environ.setdefault("IDP_ISSUER", f"http://127.0.0.1:{idp_port}")
    os.environ.setdefault("IDP_INSECURE_DEV_COOKIES", "1")  # plain http on 127.0.0.1, development only
    os.environ.setdefault("IDP_DEV_CARD", str(var / "cards" / "demo.json"))
    os.environ.setdefault("CONSOLE_INSECURE_DEV_COOKIES", "1")  # the operator console, same development rule
    os.environ.setdefault("CONSOLE_PEER_URL", f"{os.environ['IDP_ISSUER']}/operator/clients")

    from observability.logs import use_json_logs

    use_json_logs()  # the services' own lines, as JSON on stderr; this program's summary stays on stdout
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with contextlib.ExitStack() as stack:
        if os.environ.get("REDIS_URL"):
            redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
            say("redis", "using REDIS_URL")
        else:
            server = RedisServer(var / "redis", port=int(os.environ.get("MYKEY_REDIS_PORT", "6390")), persist=True)
            stack.callback(say, "redis", "stopped")  # runs after the server's own exit (LIFO)
            stack.enter_context(server)
            os.environ["REDIS_URL"] = server.url
            say("redis", f"started {server.url} (data in {var / 'redis'})")

        ca = DevCA.load_or_create(var / "pki", os.environ["REVOCATION_URL"])
        say("dev CA", f"{var / 'pki'} (auth and signing roots, OCSP responders; DEVELOPMENT ONLY)")

        revocation = start_revocation(stack, revocation_port, stopping)
        idp_url = start_idp(stack, idp_port)
        start_signals_worker(stack, stopping)
        demo_url = start_demo_rp(stack, demo_port, idp_url, var / "demo-rp.json")
        card_path = ensure_demo_card(ca, var / "cards" / "demo.json", revocation)
        card = VirtualCard.load(card_path)
        say("card", f"{card_path}: auth PIN tries left {card.tries_left(CertificateKind.AUTH)}")
        say("log in", f"open {demo_url} and click 'Log in with My Number Card'; the login page then shows the")
        say("", "one command that answers with the virtual card:")
        say("", f".venv/bin/python -m nfc_bridge login {idp_url}/api/login/<handle> --reader virtual "
                f"--card {card_path}")
        say("account", f"{idp_url}/account shows your MyKey ID, consents and access record")
        say("running", "press Ctrl-C to stop")
        try:
            stopping.wait()
        except KeyboardInterrupt:
            print()
        stopping.set()
    return 0


def start_revocation(stack: contextlib.ExitStack, port: int, stopping: threading.Event):
    from revocation.app import create_app
    from revocation.config import RevocationConfig
    from revocation.services import build_services
    from revocation.worker import run_worker

    config = RevocationConfig.from_env()
    services = build_services(config)
    live = stack.enter_context(LiveServer(create_app(config, services), port))
    say("revocation", f"{live.url} (OCSP {live.url}/ocsp, CRLs {live.url}/crl/auth/0.crl, operator API /ops)")
    worker = threading.Thread(target=run_worker, args=(services, stopping), daemon=True)
    worker.start()
    stack.callback(worker.join, 5)
    say("worker", "applying resident-register events and publishing CRL shards")
    token_file = ensure_dev_operator(services, config.var_dir / "operator-token")
    say("console", f"{live.url}/operator/ (operator login: the token in {token_file})")
    return services


def ensure_dev_operator(services, token_file: Path) -> Path:
    """A development operator, `dev`, whose token is kept in var/ (0600) for the console and the /ops API."""
    if token_file.exists() and services.operators.authenticate(token_file.read_text().strip()):
        return token_file
    services.operators.disable("dev")
    token = services.operators.add("dev")
    with os.fdopen(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(token + "\n")
    return token_file


def start_idp(stack: contextlib.ExitStack, port: int) -> str:
    from deploy.composition import idp_app

    live = stack.enter_context(LiveServer(idp_app(), port))
    say("idp", f"{live.url} (discovery {live.url}/.well-known/openid-configuration)")
    return live.url


def start_signals_worker(stack: contextlib.ExitStack, stopping: threading.Event) -> None:
    """`python -m idp signals run`, as a thread: status feeds → SSF streams and back-channel logout tokens."""
    from deploy.composition import idp_services
    from idp.config import IdpConfig
    from idp.signals.service import build_signals
    from idp.signals.worker import run_worker

    signals = build_signals(idp_services(IdpConfig.from_env()))
    worker = threading.Thread(target=run_worker, args=(signals, stopping), daemon=True)
    worker.start()
    stack.callback(worker.join, 5)
    say("signals", "pushing session-revoked / credential-change events and logout tokens to relying parties")


def start_demo_rp(stack: contextlib.ExitStack, port: int, idp_url: str, registration: Path) -> str:
    """The demo relying party, registered once as a client (its credentials kept in var/demo-rp.json)."""
    import json

    from demo_rp.app import create_app
    from idp.config import IdpConfig
    from idp.oidc.clients import ClientRegistry
    from wire.redis_connect import connect_redis

    base = f"http://127.0.0.1:{port}"
    config = IdpConfig.from_env()
    registry = ClientRegistry(connect_redis(config.redis_url, config.redis_cluster))
    known = json.loads(registration.read_text()) if registration.exists() else None
    if known is None or registry.get(known["client_id"]) is None:
        client, secret = registry.add("Example Shop (demo)", [f"{base}/callback"],
                                      post_logout_redirect_uris=[f"{base}/"],
                                      backchannel_logout_uri=f"{base}/backchannel-logout")
        known = {"client_id": client.client_id, "client_secret": secret}
        registration.write_text(json.dumps(known))
        registration.chmod(0o600)
        say("demo rp", f"registered client {client.client_id}")
    tsa_url = start_dev_tsa(stack, int(os.environ.get("MYKEY_DEV_TSA_PORT", "8083")))
    live = stack.enter_context(LiveServer(create_app(idp_url, known["client_id"], known["client_secret"], base,
                                                     tsa_url=tsa_url), port))
    say("demo rp", f"{live.url} (Example Shop, an Authlib OpenID Connect client; an SSF receiver too)")
    return live.url


def start_dev_tsa(stack: contextlib.ExitStack, port: int) -> str:
    """The development RFC 3161 TSA the demo relying party time-stamps its signed PDFs with (devstack/tsa.py); a
    new TSA PKI each start, so trust its root (GET /tsa-root.pem) to validate files signed in this run."""
    from devstack.tsa import DevTSA, create_app

    url = f"http://127.0.0.1:{port}"
    live = stack.enter_context(LiveServer(create_app(DevTSA.generate(url)), port))
    say("dev tsa", f"{live.url}/tsa (RFC 3161 time-stamps for the demo relying party; not a real TSA)")
    return f"{live.url}/tsa"


def ensure_demo_card(ca: DevCA, path: Path, revocation) -> Path:
    """A virtual card, and the resident-register event that records its certificates as issued."""
    if path.exists():
        return path
    from jpki import parse_certificate
    from revocation.domain.events import CertificateRef, certificate_issued

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_card_file(path, new_card_state(ca, DEMO_AUTH_PIN, DEMO_SIGN_PIN))
    card = VirtualCard.load(path)
    certificates = []
    for kind in CertificateKind:
        cert = parse_certificate(card.certificate(kind))
        certificates.append(CertificateRef(kind, cert.serial, cert.not_after))
    issued_at = parse_certificate(card.certificate(CertificateKind.AUTH)).not_before
    revocation.stream.submit(certificate_issued(f"demo-issue-{secrets.token_hex(4)}x", "demo-holder", "demo-card",
                                                certificates, occurred_at=issued_at, source="devstack"))
    say("card", f"created virtual My Number Card {path} (auth PIN {DEMO_AUTH_PIN}, signing PIN {DEMO_SIGN_PIN})")
    return path



if __name__ == "__main__":
    sys.exit(main())

"""The shared shapes at the edge (wire/): coded errors, the Redis connection, the bounded fetcher."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from dataclasses import replace

import pytest
import redis
from redis.exceptions import RedisClusterException

from wire.errors import CodedError
from wire.fetch import Fetched, Fetcher, FetchFailed, FetchPolicy
from wire.redis_connect import CONNECT_TIMEOUT_SECONDS, connect_redis

# --- coded errors ----------------------------------------------------------------------------------------------


def test_the_card_and_certificate_families_are_coded_errors_with_their_codes_unchanged():
    from jpki.certificate import CertificateError, MalformedCertificate
    from nfc_bridge.apdu import CardError, CardRemoved, PinLocked, WrongPin
    from nfc_bridge.client import JukiCardRefused
    from nfc_bridge.login import LoginFailed

    raised = [CardError("The reader failed."), CardRemoved("The card was removed."), WrongPin(0x63C2),
              PinLocked(0x6983), JukiCardRefused(), MalformedCertificate("Not DER."),
              LoginFailed("idp_unreachable", "The login service could not be reached.")]
    assert [error.code for error in raised] == ["card_error", "card_removed", "wrong_pin", "pin_locked",
                                                "juki_card_refused", "certificate_malformed", "idp_unreachable"]
    for error in raised:
        assert isinstance(error, CodedError)
        assert str(error) == error.message and error.message.endswith(".")
        assert repr(error) == f"{type(error).__name__}({error.code!r})"  # a repr never carries the sentence
    assert WrongPin(0x63C2).tries_left == 2 and WrongPin(0x63C2).sw == 0x63C2
    assert isinstance(MalformedCertificate("x"), ValueError) and issubclass(MalformedCertificate, CertificateError)


def test_every_coded_error_family_of_the_services_shares_the_one_base():
    from idp.cli import CommandFailed
    from idp.config import ConfigurationError as IdpConfigurationError
    from idp.login.transactions import LoginError
    from idp.login.verification import ErrorCode, VerificationError
    from idp.oidc.clients import ClientRegistrationError
    from operator_console.registry import OperatorError
    from revocation.config import ConfigurationError as RevocationConfigurationError
    from revocation.domain.events import EventRefused
    from revocation.operations.actions import OperationError

    for family in (CommandFailed, LoginError, VerificationError, ClientRegistrationError, OperatorError,
                   EventRefused, OperationError, IdpConfigurationError, RevocationConfigurationError):
        assert issubclass(family, CodedError), family
    assert LoginError("challenge_expired", "The login has expired.", status=410).status == 410
    assert LoginError("challenge_expired", "The login has expired.").status == 400
    refused = VerificationError("certificate_revoked", "The certificate is revoked.")
    assert refused.code is ErrorCode.CERTIFICATE_REVOKED and repr(refused) == "VerificationError('certificate_revoked')"
    for configuration_error in (IdpConfigurationError, RevocationConfigurationError):
        error = configuration_error("Set REDIS_URL.")
        assert isinstance(error, ValueError) and error.code == "configuration_refused"
        assert str(error) == "Set REDIS_URL."


def test_a_coded_error_carries_an_http_status_hint_only_when_given():
    assert CodedError("x", "A sentence.").status == 400
    assert CodedError("x", "A sentence.", status=410).status == 410


# --- connecting to Redis ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def silent_listener():
    """A loopback address that never answers a connect: its accept queue is full, so the kernel drops each SYN."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = []
    try:
        for _ in range(3):  # fill the backlog; these connections are never accepted
            pending = socket.socket()
            pending.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                pending.connect(("127.0.0.1", port))
            queued.append(pending)
        time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for pending in queued:
            pending.close()
        server.close()


@pytest.mark.parametrize("cluster", [False, True])
def test_a_redis_address_that_never_answers_is_an_error_within_the_connect_timeout(cluster):
    with silent_listener() as url:
        started = time.monotonic()
        with pytest.raises((redis.exceptions.TimeoutError, redis.exceptions.ConnectionError, RedisClusterException)):
            connect_redis(url, cluster).ping()
        elapsed = time.monotonic() - started
    assert CONNECT_TIMEOUT_SECONDS - 0.5 < elapsed < CONNECT_TIMEOUT_SECONDS + 3


# --- the bounded fetcher ---------------------------------------------------------------------------------------


class Answers(http.server.BaseHTTPRequestHandler):
    """/redirect → 302 to /target; /big → 100 KB; /drip → a byte every 0.2 s; anything else → "ok"."""

    seen: list[str] = []

    def do_GET(self):
        type(self).seen.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/target")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"x" * 100_000 if self.path == "/big" else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(25 if self.path == "/drip" else len(body)))
        self.end_headers()
        if self.path == "/drip":
            with contextlib.suppress(OSError):
                for _ in range(25):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def answers():
    Answers.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


LOOPBACK = FetchPolicy(timeout=1.0, max_bytes=64 * 1024, schemes=frozenset({"http"}))


def test_a_fetch_returns_the_body_and_its_content_type(answers):
    assert Fetcher(LOOPBACK).fetch(answers + "/hello") == Fetched(200, "text/plain", b"ok")


def test_a_redirect_is_an_answer_not_a_hop(answers):
    with pytest.raises(FetchFailed) as failed:
        Fetcher(LOOPBACK).fetch(answers + "/redirect")
    assert failed.value.reason == "http_status" and failed.value.answer.status == 302
    assert Answers.seen == ["/redirect"]


def test_an_answer_over_the_size_cap_is_refused(answers):
    with pytest.raises(FetchFailed) as failed:
        Fetcher(LOOPBACK).fetch(answers + "/big")
    assert failed.value.reason == "too_large"


def test_a_slow_drip_is_cut_at_the_total_time_not_at_each_read(answers):
    started = time.monotonic()
    with pytest.raises(FetchFailed) as failed:
        Fetcher(LOOPBACK).fetch(answers + "/drip")  # every read returns within 0.2 s; the whole takes 5 s
    assert failed.value.reason == "timeout" and time.monotonic() - started < 2


@pytest.mark.parametrize(("policy", "url", "allowed"), [
    (FetchPolicy(1, 1), "http://127.0.0.1:1/x", False),  # https only by default
    (FetchPolicy(1, 1, loopback_http=True), "http://127.0.0.1:1/x", True),
    (FetchPolicy(1, 1, loopback_http=True), "http://example.jp/x", False),
    (FetchPolicy(1, 1, schemes=frozenset({"http", "https"})), "file:///etc/passwd", False),
    (FetchPolicy(1, 1), "https:///no-host", False),
    (FetchPolicy(1, 1), "https://[::1/", False),  # urlsplit cannot read it
])
def test_only_the_policys_schemes_and_hosts_are_fetched(policy, url, allowed):
    assert policy.allows(url) is allowed
    if not allowed:
        with pytest.raises(FetchFailed) as failed:
            Fetcher(policy).fetch(url)
        assert failed.value.reason == "url_not_allowed"


def test_the_environment_proxy_is_used_only_when_the_policy_says_so(answers, monkeypatch):
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("http_proxy", answers)  # the answering server doubles as the "proxy": it sees full URLs
    target = "http://127.0.0.1:9/direct"  # nothing listens on port 9: only a proxy can answer for it
    with pytest.raises(FetchFailed) as failed:
        Fetcher(LOOPBACK).fetch(target)
    assert failed.value.reason == "unreachable" and Answers.seen == []
    assert Fetcher(replace(LOOPBACK, environment_proxy=True)).fetch(target).body == b"ok"
    assert Answers.seen == [target]


def test_a_ca_file_that_cannot_be_read_fails_when_the_fetcher_is_built(tmp_path):
    with pytest.raises(OSError):
        Fetcher(FetchPolicy(1, 1, ca_file=str(tmp_path / "missing.pem")))

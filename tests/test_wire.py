"""The shared shapes at the edge (wire/): coded errors, the Redis connection, the bounded fetcher."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
import redis
from redis.exceptions import RedisClusterException

from wire.errors import CodedError
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

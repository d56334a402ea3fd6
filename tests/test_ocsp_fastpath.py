"""The OCSP serving path as a data plane: answered in front of Flask, counted in process, pre-signed responses
held in process and dropped when Redis says they changed. Real Redis, real HTTP, real processes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import redis
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponseStatus

from observability.metrics import Counter, metrics_response
from tests.test_ocsp import apply, ask, http, request_der

pytestmark = pytest.mark.timeout(60)


def command_calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def flask_requests(revocation_config, revocation_services):
    """A live revocation app that counts the requests Flask dispatched."""
    from devstack.http import LiveServer
    from revocation.app import create_app

    app = create_app(revocation_config, revocation_services)
    dispatched = []
    app.before_request(lambda: dispatched.append(1) and None)
    with LiveServer(app) as live:
        yield live, dispatched


# --- in front of Flask --------------------------------------------------------------------------------------------


def test_ocsp_is_answered_without_a_flask_dispatch(flask_requests, issue_card, dev_ca):
    live, dispatched = flask_requests
    der = request_der(issue_card()["auth"], dev_ca.auth.certificate)
    assert ask(live, der)[0].certificate_status is OCSPCertStatus.GOOD
    assert http(f"{live.url}/ocsp/{base64.b64encode(der).decode()}")[0] == 200
    assert dispatched == []
    assert http(f"{live.url}/healthz")[0] == 200
    assert dispatched == [1]  # every other path is still Flask's


@pytest.mark.parametrize(("method", "path", "allow"), [("GET", "/ocsp", "OPTIONS, POST"),
                                                         ("PUT", "/ocsp", "OPTIONS, POST"),
                                                         ("POST", "/ocsp/MAA=", "GET, HEAD, OPTIONS"),
                                                         ("DELETE", "/ocsp/MAA=", "GET, HEAD, OPTIONS")])
def test_a_wrong_method_is_405_with_allow_and_the_service_json(revocation_service, method, path, allow):
    import urllib.request

    status, headers, body = http_method(f"{revocation_service.url}{path}", method, urllib.request)
    assert status == 405
    assert sorted(headers["Allow"].split(", ")) == allow.split(", ")
    assert json.loads(body)["error"] == "method_not_allowed"


def http_method(url, method, urllib_request):
    import urllib.error

    request = urllib_request.Request(url, method=method, data=b"" if method in ("POST", "PUT") else None,
                                     headers={"Content-Type": "application/ocsp-request"})
    try:
        with urllib_request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_head_of_a_get_has_its_headers_and_no_body(revocation_service, issue_card, dev_ca):
    import urllib.request

    der = request_der(issue_card()["auth"], dev_ca.auth.certificate)
    url = f"{revocation_service.url}/ocsp/{base64.b64encode(der).decode()}"
    _, get_headers, body = http(url)
    status, headers, head_body = http_method(url, "HEAD", urllib.request)
    assert (status, head_body) == (200, b"")
    assert headers["Content-Length"] == str(len(body)) and headers["ETag"] == get_headers["ETag"]
    assert headers["Content-Type"] == "application/ocsp-response"


def test_a_bare_slash_after_ocsp_is_still_not_found(revocation_service):
    status, _, body = http(f"{revocation_service.url}/ocsp/")
    assert status == 404 and json.loads(body)["error"] == "not_found"


# --- metrics counted in process -----------------------------------------------------------------------------------


def test_counting_costs_no_redis_round_trip_and_a_scrape_sees_every_count(redis_client):
    counter = Counter(redis_client, "test_fastpath_total", "counted in process", ("status",))
    before = command_calls(redis_client, "hincrby")
    for _ in range(200):
        counter.inc(status="good")
    assert command_calls(redis_client, "hincrby") - before <= 2  # one per flush, never one per count
    assert 'test_fastpath_total{status="good"} 200.0' in metrics_response([counter]).get_data(as_text=True)


COUNT_AND_WAIT = """
import sys, redis
from observability.metrics import Counter
counter = Counter(redis.Redis.from_url(sys.argv[1]), "test_elsewhere_total", "counted in another process", ("s",))
for _ in range(5):
    counter.inc(s="x")
print("counted", flush=True)
sys.stdin.readline()  # stays alive (no exit flush) until the test has scraped
"""


def test_a_scrape_sees_what_another_live_process_counted_a_moment_ago(redis_server, redis_client):
    process = subprocess.Popen([sys.executable, "-c", COUNT_AND_WAIT, redis_server.url], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "counted"
        counter = Counter(redis_client, "test_elsewhere_total", "counted in another process", ("s",))
        assert 'test_elsewhere_total{s="x"} 5.0' in metrics_response([counter]).get_data(as_text=True)
    finally:
        process.communicate("\n", timeout=20)


# --- pre-signed responses held in process -------------------------------------------------------------------------


def test_a_cached_good_answer_is_served_from_the_process_without_asking_redis(revocation_service, issue_card,
                                                                               dev_ca, redis_client):
    der = request_der(issue_card()["auth"], dev_ca.auth.certificate)
    first = http(f"{revocation_service.url}/ocsp", der)[2]
    http(f"{revocation_service.url}/ocsp", der)  # now held in process
    reads = command_calls(redis_client, "hmget")
    for _ in range(10):
        assert http(f"{revocation_service.url}/ocsp", der)[2] == first
    assert command_calls(redis_client, "hmget") == reads


def test_a_revocation_is_never_answered_from_a_stale_process_copy(revocation_service, issue_card, dev_ca):
    card = issue_card()
    der = request_der(card["auth"], dev_ca.auth.certificate)
    for _ in range(3):  # the good answer is now held in this process
        assert ask(revocation_service, der)[0].certificate_status is OCSPCertStatus.GOOD
    apply(revocation_service.services, "card_lost", card)
    # No wait: Redis writes the invalidation before it answers the revocation's write, and each lookup reads
    # what has arrived before it trusts its copy.
    response = ask(revocation_service, der)[0]
    assert response.response_status is OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is OCSPCertStatus.REVOKED


def test_a_copy_is_dropped_when_its_redis_entry_is_deleted_by_anyone(revocation_service, issue_card, dev_ca,
                                                                     redis_client):
    card = issue_card()
    services = revocation_service.services
    der = request_der(card["auth"], dev_ca.auth.certificate)
    first = http(f"{revocation_service.url}/ocsp", der)[2]
    http(f"{revocation_service.url}/ocsp", der)
    redis_client.delete(services.store.keys.ocsp_cache("auth", card["auth"].serial_number))
    second = http(f"{revocation_service.url}/ocsp", der)[2]
    assert second != first  # signed again: ECDSA signatures are randomised


def test_a_read_racing_a_change_to_its_own_key_is_not_held_but_changes_elsewhere_do_not_stop_holding(redis_client):
    import time

    from revocation.ocsp import held as held_module

    prefix = "rv:ocsp:test-held:"
    held = held_module.HeldResponses(redis_client, prefix)
    mine, other = prefix + "mine", prefix + "other"

    def announced(key: str) -> None:
        redis_client.hset(key, "sha1", b"x")  # anyone's write under the prefix is announced
        time.sleep(0.05)  # on its way back over the tracking connection

    _, ticket = held.lookup(mine, "sha1")
    announced(other)
    held.keep(mine, "sha1", "read before the other key changed", time.time() + 60, ticket)
    assert held.lookup(mine, "sha1")[0] == "read before the other key changed"

    _, ticket = held.lookup(prefix + "racing", "sha1")
    announced(prefix + "racing")
    held.keep(prefix + "racing", "sha1", "stale", time.time() + 60, ticket)
    assert held.lookup(prefix + "racing", "sha1")[0] is None

    _, ticket = held.lookup(prefix + "old", "sha1")
    for index in range(held_module.CHANGES_REMEMBERED + 1):  # more changes than are remembered: refused
        redis_client.hset(f"{prefix}many:{index}", "sha1", b"x")
    time.sleep(0.2)
    held.keep(prefix + "old", "sha1", "too old to check", time.time() + 60, ticket)
    assert held.lookup(prefix + "old", "sha1")[0] is None

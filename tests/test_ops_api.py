"""The operator API over real HTTP: tokens, all-or-nothing batches, lookups, manual actions, audit, health."""

import json

import pytest
import requests

from revocation.storage.store import CertificateStatus


@pytest.fixture
def ops(revocation_service):
    token = revocation_service.services.operators.add("alice")

    def call(method, path, body=None, raw=None, headers=None, token_=token):
        all_headers = {"Authorization": f"Bearer {token_}"} if token_ else {}
        all_headers |= {"Content-Type": "application/json"} | (headers or {})
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return requests.request(method, f"{revocation_service.url}/ops{path}", data=data, headers=all_headers,
                                timeout=30)

    return call


def event(event_id, type_, holder, **fields):
    return {"event_id": event_id, "type": type_, "holder": holder, "occurred_at": "2026-03-01T00:00:00Z",
            "source": "ops-test", **fields}


def test_every_endpoint_needs_an_operator_token(ops, revocation_service):
    for method, path in (("POST", "/events"), ("GET", "/stream"), ("GET", "/audit"), ("GET", "/crl"),
                         ("GET", "/certificates/auth/AB"), ("POST", "/certificates/auth/AB/hold")):
        assert ops(method, path, {}, token_=None).status_code == 401
        response = ops(method, path, {}, token_="rvop_wrong")
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "rvop_wrong" not in response.text
    assert ops("GET", "/stream").status_code == 200
    revocation_service.services.operators.disable("alice")
    assert ops("GET", "/stream").status_code == 401


def test_a_disabled_operator_name_can_be_added_again_with_a_new_token(revocation_services):
    from operator_console.registry import OperatorError

    registry = revocation_services.operators
    first = registry.add("carol")
    with pytest.raises(OperatorError, match="active operator"):
        registry.add("carol")
    registry.disable("carol")
    second = registry.add("carol")
    assert registry.authenticate(first) is None and registry.authenticate(second) == "carol"
    stored = revocation_services.redis.hgetall("rv:operators")
    assert not any(token.encode() in key + value for token in (first, second) for key, value in stored.items())


def test_a_batch_is_applied_whole_or_not_at_all(ops, issue_card, revocation_services):
    card = issue_card()
    good = event("lost-1", "card_lost", card["holder"], card_id=card["card_id"])
    bad = event("bad-1", "card_lost", card["holder"], card_id=card["card_id"], note="extra")
    refused = ops("POST", "/events", {"events": [good, bad]})
    assert refused.status_code == 422 and refused.json()["refused"][0]["index"] == 1
    assert revocation_services.store.get("auth", card["auth"].serial_number).status is CertificateStatus.GOOD
    accepted = ops("POST", "/events", {"events": [good]})
    assert accepted.status_code == 200
    assert accepted.json()["results"][0]["changes"] == {"held": 2}
    again = ops("POST", "/events", good)
    assert again.json()["results"][0]["duplicate"] is True and again.json()["results"][0]["changes"] == {}
    history = revocation_services.store.history("auth", card["auth"].serial_number)
    assert [entry["event_id"] for entry in history] == ["lost-1"]  # applied once


def test_a_submission_is_audited_with_its_event_ids_and_types(ops, issue_card):
    card = issue_card()
    batch = [event("lost-2", "card_lost", card["holder"], card_id=card["card_id"]),
             event("ff-2", "four_facts_changed", card["holder"], changed=["name"])]
    results = ops("POST", "/events", {"events": batch}).json()["results"]
    assert [(r["event_id"], r["queued"]) for r in results] == [("lost-2", False), ("ff-2", False)]
    [entry] = [e for e in ops("GET", "/audit?count=10").json()["entries"] if e["action"] == "events_submitted"]
    assert entry["actor"] == "operator:alice"
    assert entry["detail"]["events"] == [{"event_id": "lost-2", "type": "card_lost"},
                                         {"event_id": "ff-2", "type": "four_facts_changed"}]


@pytest.mark.parametrize(("body", "code", "status"), [
    ({"event_id": "x", "type": "married", "holder": "h", "occurred_at": "2026-01-01T00:00:00Z", "source": "s"},
     "unknown_event_type", 422),
    ({"event_id": "x", "type": "died", "holder": "123456789012", "occurred_at": "2026-01-01T00:00:00Z",
      "source": "s"}, "my_number_refused", 422),
    ({"event_id": "x", "type": "died", "holder": "h-1", "occurred_at": "2026-01-01T00:00:00Z",
      "source": "1234 5678 9012"}, "my_number_refused", 422),
    ({"event_id": "x", "type": "died", "holder": "h-1", "occurred_at": "2026-01-01T00:00:00Z", "source": "s",
      "my_number": "h-secret-value"}, "invalid_event", 422),
])
def test_refused_events_name_the_rule_and_never_echo(ops, revocation_services, body, code, status):
    response = ops("POST", "/events", body)
    assert response.status_code == status and response.json()["refused"][0]["error"] == code
    assert response.json()["refused"][0]["message"]
    for value in ("123456789012", "5678", "h-secret-value"):
        assert value not in response.text
    assert revocation_services.redis.xlen("rv:events") == 0


def test_transport_level_refusals(ops):
    assert ops("POST", "/events", raw="{nope").json()["error"] == "malformed_json"
    wrong_type = ops("POST", "/events", raw="{}", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and wrong_type.json()["error"] == "unsupported_media_type"
    assert ops("POST", "/events", raw="[" + "1," * 600_000 + "1]").status_code == 413
    assert ops("POST", "/events", {"events": []}).json()["error"] == "invalid_batch"


def test_lookup_shows_status_links_history_and_audit(ops, issue_card, revocation_services):
    card = issue_card()
    auth = f"{card['auth'].serial_number:X}"
    signing = f"{card['signing'].serial_number:X}"
    ops("POST", "/events", event("renew-1", "certificate_renewed", card["holder"], card_id=card["card_id"],
                                 renewals=[{"kind": "auth", "old_serial": auth, "new_serial": "ABCDEF01",
                                            "not_after": "2036-01-01T00:00:00Z"}]))
    old = ops("GET", f"/certificates/auth/{auth}").json()
    assert old["status"] == "revoked" and old["reason"] == "superseded"
    assert old["renewal"] == {"previous": None, "next": "ABCDEF01", "latest": "ABCDEF01"}
    assert old["history"][0]["event_id"] == "renew-1"
    assert ops("GET", f"/certificates/signing/{signing}").json()["auth_certificate"] == auth
    assert ops("GET", "/certificates/auth/ABCDEF01").json()["renewal"]["previous"] == auth
    assert ops("GET", "/certificates/auth/123").json()["error"] == "unknown_certificate"
    assert ops("GET", "/certificates/nope/12").json()["error"] == "unknown_issuer"
    assert ops("GET", "/certificates/auth/zz").json()["error"] == "invalid_serial"


def test_manual_hold_release_revoke_with_comment_and_audit(ops, issue_card):
    card = issue_card()
    serial = f"{card['auth'].serial_number:X}"
    path = f"/certificates/auth/{serial}"
    assert ops("POST", f"{path}/hold", {}).json()["error"] == "comment_required"
    assert ops("POST", f"{path}/hold", {"comment": "call centre: card lost"}).json()["status"] == "on_hold"
    assert ops("POST", f"{path}/release", {"comment": "found"}).json()["status"] == "good"
    assert ops("POST", f"{path}/revoke", {"comment": "x", "reason": "bogus"}).json()["error"] == "invalid_reason"
    revoked = ops("POST", f"{path}/revoke", {"comment": "holder asked", "reason": "cessationOfOperation"}).json()
    assert revoked["status"] == "revoked" and revoked["changed"]
    final = ops("POST", f"{path}/release", {"comment": "try"}).json()
    assert final["changed"] is False and "final" in final["message"]
    looked = ops("GET", path).json()
    assert [(h["do"], h["reason"], h["source"]) for h in looked["history"]] == [
        ("hold", "certificateHold", "operator:alice"), ("release", "removeFromCRL", "operator:alice"),
        ("revoke", "cessationOfOperation", "operator:alice")]
    audit = {a["action"]: a for a in looked["audit"]}
    assert audit["certificate_revoke"]["detail"] == {"certificate": f"auth:{serial}", "reason": "cessationOfOperation",
                                                     "comment": "holder asked", "changed": True}
    assert audit["certificate_hold"]["detail"]["comment"] == "call centre: card lost"
    assert audit["certificate_revoke"]["event_id"] == revoked["event_id"]
    assert all(a["actor"] == "operator:alice" for a in looked["audit"])


def test_a_manual_action_drops_the_cached_ocsp_answer_and_is_refused_whole(ops, issue_card, revocation_services):
    card = issue_card()
    serial = card["signing"].serial_number
    path = f"/certificates/signing/{serial:X}"
    revocation_services.ocsp.on_status_change("signing", serial, revocation_services.store.get("signing", serial))
    cache = revocation_services.store.keys.ocsp_cache("signing", serial)
    before = revocation_services.redis.hgetall(cache)
    assert before
    refused = ops("POST", f"{path}/hold", {"comment": "caller gave 1234-5678-9012"})
    assert refused.status_code == 422 and refused.json()["error"] == "my_number_refused"
    assert "5678" not in refused.text and revocation_services.redis.hgetall(cache) == before
    assert ops("POST", f"{path}/hold", {"comment": "x" * 501}).json()["error"] == "comment_required"
    assert ops("POST", f"{path}/hold", {"comment": "ok", "extra": 1}).json()["error"] == "invalid_request"
    assert ops("POST", f"{path}/suspend", {"comment": "ok"}).json()["error"] == "unknown_action"
    assert ops("GET", path).json()["status"] == "good"
    assert ops("POST", f"{path}/hold", {"comment": "call centre"}).json()["changed"] is True
    assert revocation_services.redis.hgetall(cache) == {}  # dropped with the change; the next request signs anew


def test_stream_crl_and_audit_views(ops, issue_card):
    issue_card()
    health = ops("GET", "/stream").json()
    assert {"length", "lag", "pending", "consumers", "refused"} <= set(health)
    shards = ops("GET", "/crl").json()["shards"]
    assert shards and {"issuer", "shard"} <= set(shards[0])
    assert ops("GET", "/audit?count=0").json()["error"] == "invalid_count"
    assert ops("GET", "/audit?before=nope").json()["error"] == "invalid_before"


def test_the_audit_log_pages_back_from_the_newest(ops, revocation_services):
    for n in range(5):
        revocation_services.audit.record("cli:test", "operator_added", {"operator": f"op{n}"})
    first = ops("GET", "/audit?count=2").json()["entries"]
    second = ops("GET", f"/audit?count=2&before={first[-1]['id']}").json()["entries"]
    assert [e["detail"]["operator"] for e in first + second] == ["op4", "op3", "op2", "op1"]


def test_logs_never_carry_serials_or_my_numbers(ops, issue_card, caplog):
    caplog.set_level("DEBUG")
    card = issue_card()
    serial = f"{card['auth'].serial_number:X}"
    ops("POST", f"/certificates/auth/{serial}/hold", {"comment": "lost"})
    ops("GET", f"/certificates/auth/{serial}")
    ops("POST", "/events", event("x1", "died", "1234-5678-9012"))
    ops("POST", "/events", event("x2", "died", "123456789012"))
    ops("POST", "/events", event("lost-9", "card_lost", card["holder"], card_id=card["card_id"]))
    service_lines = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records
                             if not r.name.startswith("urllib3"))
    assert "event applied" in service_lines  # the service did log
    assert serial not in service_lines and str(card["auth"].serial_number) not in service_lines
    assert "5678" not in service_lines and card["holder"] not in service_lines


@pytest.mark.parametrize("raw", [
    "[" * 3000 + "]" * 3000,  # a few KB, deeper than Python's decoder can recurse
    '{"events": [' + "[" * 2000 + "]" * 2000 + "]}",
    '{"event_id": "x", "type": "died", "holder": "h", "occurred_at": "2026-01-01T00:00:00Z", "source": NaN}',
])
def test_deep_or_non_finite_json_is_a_400_not_a_crash(ops, revocation_services, raw):
    response = ops("POST", "/events", raw=raw)
    assert response.status_code == 400 and response.json()["error"] == "malformed_json"
    assert response.json()["message"].endswith(".")
    assert revocation_services.redis.xlen("rv:events") == 0


def test_a_renewal_of_a_certificate_never_issued_refuses_the_batch(ops, issue_card, revocation_services):
    card = issue_card()
    auth = f"{card['auth'].serial_number:X}"
    ghost = event("renew-ghost", "certificate_renewed", card["holder"], card_id=card["card_id"], renewals=[
        {"kind": "auth", "old_serial": "7E570001", "new_serial": "7E570002", "not_after": "2036-01-01T00:00:00Z"}])
    lost = event("lost-g", "card_lost", card["holder"], card_id=card["card_id"])
    refused = ops("POST", "/events", {"events": [lost, ghost]})
    assert refused.status_code == 422 and refused.json()["refused"] == [
        {"index": 1, "error": "unknown_old_serial", "message": refused.json()["refused"][0]["message"]}]
    assert "7E570001" not in refused.text and revocation_services.redis.xlen("rv:events") == 0
    # A certificate issued earlier in the same batch is known to a renewal after it.
    issued = event("issue-b", "certificate_issued", card["holder"], card_id="card-b", certificates=[
        {"serial": "7E570003", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"}])
    renewed = event("renew-b", "certificate_renewed", card["holder"], card_id="card-b", renewals=[
        {"kind": "auth", "old_serial": "7E570003", "new_serial": "7E570004", "not_after": "2036-01-01T00:00:00Z"}])
    accepted = ops("POST", "/events", {"events": [issued, renewed]})
    assert accepted.status_code == 200, accepted.text
    assert [r["refused"] for r in accepted.json()["results"]] == [None, None]
    assert ops("GET", "/certificates/auth/7E570003").json()["status"] == "revoked"
    assert ops("GET", f"/certificates/auth/{auth}").json()["status"] == "good"


@pytest.mark.parametrize(("path", "code"), [
    ("/audit?count=%C2%B2", "invalid_count"),  # "²" is a digit to str.isdigit, not to int()
    ("/audit?before=1-1%0A", "invalid_before"),  # "$" in a pattern matches before a final newline
    ("/audit?before=99999999999999999999-1", "invalid_before"),  # beyond a stream id's 64 bits
])
def test_odd_query_values_are_refused_not_a_crash(ops, path, code):
    response = ops("GET", path)
    assert response.status_code == 400 and response.json()["error"] == code


def test_a_reason_or_comment_of_the_wrong_json_type_is_refused(ops, issue_card):
    card = issue_card()
    path = f"/certificates/auth/{card['auth'].serial_number:X}"
    listed = ops("POST", f"{path}/revoke", {"comment": "x", "reason": ["keyCompromise"]})
    assert listed.status_code == 400 and listed.json()["error"] == "invalid_reason"
    assert ops("POST", f"{path}/hold", {"comment": ["x"]}).json()["error"] == "comment_required"
    assert ops("POST", f"{path}/hold", ["comment"]).json()["error"] == "invalid_request"
    assert ops("GET", path).json()["status"] == "good"

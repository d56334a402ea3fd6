"""`python -m revocation` as operators run it: real subprocesses against the test Redis."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(revocation_config, revocation_services):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": revocation_config.redis_url,
           "MYKEY_VAR": str(revocation_config.var_dir), "REVOCATION_URL": revocation_config.base_url,
           "STATUS_BUCKETS": str(revocation_config.status_buckets),
           "HOLDER_BUCKETS": str(revocation_config.holder_buckets)}

    def run(*args, stdin=None, **overrides):
        return subprocess.run([sys.executable, "-m", "revocation", *map(str, args)], env=env | overrides,
                              input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT)

    run.env = env
    return run


def line(event_id, type_, holder, **fields):
    return json.dumps({"event_id": event_id, "type": type_, "holder": holder, "occurred_at": "2026-03-01T00:00:00Z",
                       "source": "batch", **fields})


def test_import_reports_applied_duplicate_and_refused_lines(cli, issue_card, tmp_path, revocation_services):
    card = issue_card()
    events = tmp_path / "events.jsonl"
    events.write_bytes("\n".join([
        line("lost-1", "card_lost", card["holder"], card_id=card["card_id"]),
        line("lost-1", "card_lost", card["holder"], card_id=card["card_id"]),
        line("bad-1", "card_lost", "0123-4567-8901", card_id=card["card_id"]),
        "{not json",
        "",
        line("found-1", "card_found", card["holder"], card_id=card["card_id"]).replace("03-01", "03-02"),
        line("big-1", "died", card["holder"]).replace('"batch"', '"' + "b" * 20_000 + '"'),
        line("extra-1", "died", card["holder"])[:-1] + ', "note": "secret-note"}',
    ]).encode() + b"\n\xff\xfe not utf-8\n")
    result = cli("events", "import", events)
    assert result.returncode == 2, result.stderr
    assert result.stdout.strip() == "applied 2, duplicate 1, refused 5"
    assert "line 3: refused (my_number_refused)" in result.stderr
    assert "line 4: refused (malformed_json)" in result.stderr
    assert "line 7: refused (event_too_large)" in result.stderr
    assert "line 8: refused (invalid_event)" in result.stderr
    assert "line 9: refused (malformed_json)" in result.stderr
    output = result.stderr + result.stdout
    assert "0123-4567-8901" not in output and "secret-note" not in output and "Traceback" not in output
    assert "100%" in result.stderr and "3 events submitted" in result.stderr  # progress, not a terminal
    serial = card["auth"].serial_number
    assert revocation_services.store.get("auth", serial).status.name == "GOOD"
    assert [h["event_id"] for h in revocation_services.store.history("auth", serial)] == ["lost-1", "found-1"]
    [audit] = [e for e in revocation_services.audit.read(10) if e["action"] == "events_imported"]
    assert audit["actor"].startswith("cli:") and audit["detail"]["refused"] == 5
    assert cli("events", "import", tmp_path / "missing.jsonl").returncode == 1


def test_usage_and_connection_errors_are_one_sentence_and_exit_1(cli):
    usage = cli("hold", "auth", "AB")
    assert usage.returncode == 1 and "error (usage):" in usage.stderr
    issuer = cli("status", "other", "AB")
    assert issuer.returncode == 1 and "error (unknown_issuer):" in issuer.stderr
    down = cli("stream", REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
    assert down.returncode == 1 and "error (redis_unavailable):" in down.stderr
    assert "Traceback" not in down.stderr and "hunter2" not in down.stderr


def test_single_event_and_manual_actions(cli, issue_card):
    card = issue_card()
    serial = f"{card['signing'].serial_number:X}"
    result = cli("event", line("ff-1", "four_facts_changed", card["holder"], changed=["address"]))
    assert result.returncode == 0 and result.stdout.strip() == "ff-1: 1 revoked"
    assert "duplicate" in cli("event", line("ff-1", "four_facts_changed", card["holder"], changed=["address"])).stdout
    refused = cli("event", line("ff-2", "died", "123456789012"))
    assert refused.returncode == 1 and refused.stderr.startswith("error (my_number_refused):")
    assert "123456789012" not in refused.stderr
    status = json.loads(cli("status", "signing", serial).stdout)
    assert status["status"] == "revoked" and status["reason"] == "affiliationChanged"
    auth = f"{card['auth'].serial_number:X}"
    held = cli("hold", "auth", auth, "--comment", "phone call")
    assert held.returncode == 0 and "on_hold" in held.stdout
    missing = cli("hold", "auth", "ABC", "--comment", "x")
    assert missing.returncode == 1 and "unknown_certificate" in missing.stderr
    revoked = cli("revoke", "auth", auth, "--reason", "keyCompromise", "--comment", "card broken")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    looked = json.loads(cli("status", "auth", auth).stdout)
    assert looked["reason"] == "keyCompromise" and looked["audit"][0]["actor"].startswith("cli:")
    assert looked["audit"][0]["detail"]["comment"] == "card broken"


def test_operator_token_from_the_cli_works_against_the_api(cli, revocation_service):
    added = cli("operators", "add", "bob")
    assert added.returncode == 0
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("rvop_")
    response = requests.get(f"{revocation_service.url}/ops/stream", headers={"Authorization": f"Bearer {token}"},
                            timeout=10)
    assert response.status_code == 200
    assert "bob" in cli("operators", "list").stdout
    assert "shown only now" in added.stdout
    again = cli("operators", "add", "bob")
    assert again.returncode == 1 and "error (operator_exists)" in again.stderr
    assert cli("operators", "disable", "bob").returncode == 0
    assert requests.get(f"{revocation_service.url}/ops/stream", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 401
    assert "disabled" in cli("operators", "list").stdout
    assert cli("operators", "disable", "nobody").returncode == 1


def test_stream_and_crl_rebuild(cli):
    assert json.loads(cli("stream").stdout)["pending"] == 0
    rebuilt = cli("crl", "rebuild")
    assert rebuilt.returncode == 0 and "Published 32 CRL shards" in rebuilt.stdout


def test_worker_applies_events_and_stops_cleanly_on_sigterm(cli, issue_card, revocation_services):
    from revocation.domain.events import parse_event

    card = issue_card()
    worker = subprocess.Popen([sys.executable, "-m", "revocation", "worker"], env=cli.env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        revocation_services.stream.submit(parse_event(json.loads(
            line("lost-w", "card_lost", card["holder"], card_id=card["card_id"]))))
        deadline = time.monotonic() + 30
        while revocation_services.store.get("signing", card["signing"].serial_number).status.name != "ON_HOLD":
            assert time.monotonic() < deadline and worker.poll() is None, "the worker did not apply the event"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0 and "worker: stopped" in stderr
    assert '"event_id": "lost-w"' in stderr  # its JSON log line
    for serial in (card["auth"].serial_number, card["signing"].serial_number):
        assert f"{serial:X}" not in stdout + stderr and str(serial) not in stdout + stderr
    assert card["holder"] not in stdout + stderr


def test_workers_can_split_event_application_from_crl_publication(issue_card, revocation_services):
    import threading

    from cryptography import x509

    from jpki.profile import crl_shard
    from revocation.domain.events import parse_event
    from revocation.worker import run_worker

    card = issue_card()
    revocation_services.crl.rebuild_all()
    shard = crl_shard(card["auth"].serial_number)

    def run(roles, until, timeout_s=30):
        stop = threading.Event()
        thread = threading.Thread(target=run_worker, args=(revocation_services, stop),
                                  kwargs={"roles": roles, "block_ms": 50}, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not until():
            assert time.monotonic() < deadline, f"the {roles} worker did not get there"
            time.sleep(0.02)
        stop.set()
        thread.join(timeout=10)

    def published_entry():
        crl = x509.load_der_x509_crl(revocation_services.crl.get("auth", shard).der)
        return crl.get_revoked_certificate_by_serial_number(card["auth"].serial_number)

    revocation_services.stream.submit(parse_event(json.loads(
        line("lost-split", "card_lost", card["holder"], card_id=card["card_id"]))))
    run(("events",), lambda: revocation_services.store.get("auth", card["auth"].serial_number).status.name
        == "ON_HOLD")
    assert published_entry() is None  # applied, not yet published: that is the CRL worker's part
    run(("crl",), lambda: published_entry() is not None)


DEEP = "[" * 3000 + "]" * 3000  # 6 KB: well inside the event size limit, far deeper than any event


def test_a_deeply_nested_event_is_refused_in_one_sentence(cli):
    result = cli("event", DEEP)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error (malformed_json):") and len(result.stderr.strip().splitlines()) == 1


def test_import_refuses_a_deeply_nested_line_by_number_and_submits_the_lines_after_it(cli, issue_card, tmp_path,
                                                                                       revocation_services):
    card = issue_card()
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([
        line("lost-d", "card_lost", card["holder"], card_id=card["card_id"]),
        DEEP,
        '{"a": ' * 2000 + "1" + "}" * 2000,
        line("found-d", "card_found", card["holder"], card_id=card["card_id"]).replace("03-01", "03-02"),
        line("ff-d", "four_facts_changed", card["holder"], changed=["name"]).replace("03-01", "03-03"),
    ]) + "\n")
    result = cli("events", "import", events)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "line 2: refused (malformed_json)" in result.stderr and "line 3: refused (malformed_json)" in result.stderr
    assert result.stdout.strip() == "applied 3, duplicate 0, refused 2"
    assert [h["event_id"] for h in revocation_services.store.history("auth", card["auth"].serial_number)] == [
        "lost-d", "found-d"]
    assert revocation_services.store.get("signing", card["signing"].serial_number).status.name == "REVOKED"


def test_a_renewal_of_a_certificate_never_issued_is_refused(cli, issue_card, tmp_path, revocation_services):
    card = issue_card()
    ghost = line("renew-ghost", "certificate_renewed", card["holder"], card_id=card["card_id"], renewals=[
        {"kind": "auth", "old_serial": "7E570001", "new_serial": "7E570002", "not_after": "2036-01-01T00:00:00Z"}])
    result = cli("event", ghost)
    assert result.returncode == 1 and "unknown_old_serial" in result.stderr and "7E570001" not in result.stderr
    assert revocation_services.store.get("auth", 0x7E570002) is None
    # In a file, an issuance ahead of the renewal makes it known; a renewal of a ghost is refused by line number.
    issued = line("issue-r", "certificate_issued", card["holder"], card_id="card-r", certificates=[
        {"serial": "7E570003", "kind": "auth", "not_after": "2031-01-01T00:00:00Z"}])
    renewed = line("renew-r", "certificate_renewed", card["holder"], card_id="card-r", renewals=[
        {"kind": "auth", "old_serial": "7E570003", "new_serial": "7E570004", "not_after": "2036-01-01T00:00:00Z"}])
    events = tmp_path / "renewals.jsonl"
    events.write_text("\n".join([issued, ghost, renewed]) + "\n")
    imported = cli("events", "import", events)
    assert imported.returncode == 2 and "line 2: refused (unknown_old_serial)" in imported.stderr
    assert imported.stdout.strip() == "applied 2, duplicate 0, refused 1"
    assert revocation_services.store.get("auth", 0x7E570003).status.name == "REVOKED"
    assert revocation_services.store.get("auth", 0x7E570004).status.name == "GOOD"


def test_an_event_argument_that_is_not_utf8_is_malformed_json(cli):
    result = subprocess.run([sys.executable, "-m", "revocation", "event", b'{"event_id": "\xff"}'], env=cli.env,
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1 and result.stderr.startswith("error (malformed_json):"), result.stderr


def test_an_import_that_loses_redis_says_where_it_stopped(cli, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text(line("died-x", "died", "h-somebody") + "\n{nope\n")
    result = cli("events", "import", events, REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "line 2: refused (malformed_json)" in result.stderr
    assert "stopped: no line was submitted" in result.stderr and "Running the file again is safe" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error (redis_unavailable):")

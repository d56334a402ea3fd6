"""`python -m revocation` as operators run it: real subprocesses against the test Redis."""

import json
import os
import subprocess
import sys
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

    def run(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "revocation", *map(str, args)], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120, cwd=ROOT)

    return run


def line(event_id, type_, holder, **fields):
    return json.dumps({"event_id": event_id, "type": type_, "holder": holder, "occurred_at": "2026-03-01T00:00:00Z",
                       "source": "batch", **fields})


def test_import_reports_applied_duplicate_and_refused_lines(cli, issue_card, tmp_path, revocation_services):
    card = issue_card()
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([
        line("lost-1", "card_lost", card["holder"], card_id=card["card_id"]),
        line("lost-1", "card_lost", card["holder"], card_id=card["card_id"]),
        line("bad-1", "card_lost", "0123-4567-8901", card_id=card["card_id"]),
        "{not json",
        line("found-1", "card_found", card["holder"], card_id=card["card_id"]).replace("03-01", "03-02"),
    ]) + "\n")
    result = cli("events", "import", events)
    assert result.returncode == 2, result.stderr
    assert "applied 2, duplicate 1, refused 2" in result.stdout
    assert "line 3: refused (my_number_refused)" in result.stderr
    assert "line 4: refused (malformed_json)" in result.stderr
    assert "0123-4567-8901" not in result.stderr + result.stdout
    assert "events" in result.stderr  # progress


def test_single_event_and_manual_actions(cli, issue_card):
    card = issue_card()
    serial = f"{card['signing'].serial_number:X}"
    result = cli("event", line("ff-1", "four_facts_changed", card["holder"], changed=["address"]))
    assert result.returncode == 0 and "1 revoked" in result.stdout
    status = json.loads(cli("status", "sign", serial).stdout)
    assert status["status"] == "revoked" and status["reason"] == "affiliationChanged"
    auth = f"{card['auth'].serial_number:X}"
    held = cli("hold", "auth", auth, "--comment", "phone call")
    assert held.returncode == 0 and "on_hold" in held.stdout
    missing = cli("hold", "auth", "ABC", "--comment", "x")
    assert missing.returncode == 1 and "unknown_certificate" in missing.stderr


def test_operator_token_from_the_cli_works_against_the_api(cli, revocation_service):
    added = cli("operators", "add", "bob")
    assert added.returncode == 0
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("rvop_")
    response = requests.get(f"{revocation_service.url}/ops/stream", headers={"Authorization": f"Bearer {token}"},
                            timeout=10)
    assert response.status_code == 200
    assert "bob" in cli("operators", "list").stdout
    assert cli("operators", "disable", "bob").returncode == 0
    assert requests.get(f"{revocation_service.url}/ops/stream", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 401


def test_stream_and_crl_rebuild(cli):
    assert json.loads(cli("stream").stdout)["pending"] == 0
    rebuilt = cli("crl", "rebuild")
    assert rebuilt.returncode == 0 and "Published 32 CRL shards" in rebuilt.stdout

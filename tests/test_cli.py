"""`python -m nfc_bridge card new|show` as a user runs it: a real subprocess, plain output, no tracebacks."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jpki import parse_certificate
from jpki.profile import CertificateKind
from nfc_bridge.card_file import Holder
from nfc_bridge.virtual_card import VirtualCard

ROOT = Path(__file__).resolve().parents[1]


def bridge(*args, stdin: str | None = None, cwd: Path = ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "nfc_bridge", *map(str, args)], input=stdin, cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-pki")


def test_card_new_prints_kinds_serials_and_validity(tmp_path, pki):
    out = tmp_path / "card.json"
    result = bridge("card", "new", "--out", out, "--pin", "1234", "--sign-pin", "ABC123", "--name", "佐藤 一郎",
                    "--birthdate", "1970-04-01", "--sex", "1", "--pki-dir", pki)
    assert result.returncode == 0, result.stderr
    state = json.loads(out.read_text())
    auth = parse_certificate(bytes.fromhex(state["files"]["000A"]))
    signing = parse_certificate(bytes.fromhex(state["files"]["0001"]))
    assert f"serial {auth.serial:X}" in result.stdout and f"serial {signing.serial:X}" in result.stdout
    assert f"{auth.not_after:%Y-%m-%d}" in result.stdout
    assert signing.four_facts.name == "佐藤 一郎"
    assert "1234" not in result.stdout and "ABC123" not in result.stdout


def test_card_new_for_a_child_says_there_is_no_signing_certificate(tmp_path, pki):
    result = bridge("card", "new", "--out", tmp_path / "c.json", "--pin", "1234", "--sign-pin", "ABC123",
                    "--birthdate", "2020-01-01", "--pki-dir", pki)
    assert result.returncode == 0
    assert "signing  none" in result.stdout


def test_card_new_refuses_to_overwrite_and_bad_pins(tmp_path, pki):
    out = tmp_path / "c.json"
    first = bridge("card", "new", "--out", out, "--pin", "1234", "--sign-pin", "ABC123", "--pki-dir", pki)
    assert first.returncode == 0
    again = bridge("card", "new", "--out", out, "--pin", "1234", "--sign-pin", "ABC123", "--pki-dir", pki)
    assert again.returncode == 1 and "--force" in again.stderr
    bad = bridge("card", "new", "--out", tmp_path / "d.json", "--pin", "12", "--sign-pin", "ABC123", "--pki-dir", pki)
    assert bad.returncode == 1 and "invalid_pin_format" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "d.json").exists()


def test_card_show_prints_a_summary_for_a_person_first(card_file):
    result = bridge("card", "show", "--reader", "virtual", "--card", card_file)
    assert result.returncode == 0, result.stderr
    cert = parse_certificate(bytes.fromhex(json.loads(card_file.read_text())["files"]["000A"]))
    lines = result.stdout.splitlines()
    assert lines[0] == "This is a My Number Card."
    assert "User-authentication certificate (利用者証明用電子証明書)" in result.stdout
    assert f"valid      {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}  (valid now)" in result.stdout
    assert "issued by  JPKI, JPKI for user authentication" in result.stdout
    assert "PIN        3 of 3 tries left" in result.stdout and "PIN        5 of 5 tries left" in result.stdout
    assert "Signing certificate (署名用電子証明書) — read only with the signing PIN" in result.stdout
    # Never the serial (personal data), never the four basic facts; no spinner when stderr is not a terminal.
    assert f"{cert.serial:X}" not in result.stdout and str(cert.serial) not in result.stdout
    assert Holder().name not in result.stdout and Holder().address not in result.stdout
    assert result.stderr == ""


def test_card_show_json_is_one_object_for_scripts(card_file):
    result = bridge("card", "show", "--reader", "virtual", "--card", card_file, "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    shown = json.loads(result.stdout)
    cert = parse_certificate(bytes.fromhex(json.loads(card_file.read_text())["files"]["000A"]))
    assert shown == {
        "card": "card",
        "certificates": [{"kind": "auth", "issuer": cert.issuer.rfc4514_string(),
                          "not_before": cert.not_before.isoformat(), "not_after": cert.not_after.isoformat(),
                          "status": "valid"}],
        "pin_tries_left": {"auth": {"left": 3, "of": 3}, "signing": {"left": 5, "of": 5}},
    }
    assert f"{cert.serial:X}" not in result.stdout and str(cert.serial) not in result.stdout


def test_card_show_for_a_child_says_there_is_no_signing_certificate(make_card):
    child = make_card(Holder(birthdate=dt.date.today() - dt.timedelta(days=365 * 10)))
    human = bridge("card", "show", "--reader", "virtual", "--card", child)
    assert human.returncode == 0 and "Signing certificate (署名用電子証明書) — none on this card" in human.stdout
    machine = json.loads(bridge("card", "show", "--reader", "virtual", "--card", child, "--json").stdout)
    assert machine["pin_tries_left"]["signing"] is None


def test_card_show_on_a_smartphone_asks_for_the_pin(make_card):
    card = make_card(smartphone=True)
    ok = bridge("card", "show", "--reader", "virtual", "--card", card, "--pin-stdin", stdin="1234\n")
    assert ok.returncode == 0 and "smartphone" in ok.stdout
    wrong = bridge("card", "show", "--reader", "virtual", "--card", card, "--pin-stdin", stdin="4321\n")
    assert wrong.returncode == 1
    assert wrong.stderr.splitlines()[-1] == "error (wrong_pin): Wrong PIN. 2 tries left before the card locks this PIN."
    assert "4321" not in wrong.stderr + wrong.stdout


def test_tries_left_are_said_in_words_after_each_wrong_pin(make_card):
    phone = make_card(smartphone=True)

    def show(*extra):
        return bridge("card", "show", "--reader", "virtual", "--card", phone, "--pin-stdin", *extra, stdin="4321\n")

    assert "Wrong PIN. 2 tries left before the card locks this PIN." in show().stderr
    warned = show()
    assert warned.returncode == 1
    assert "Warning: wrong PIN, and only 1 try is left" in warned.stderr and "municipal office" in warned.stderr
    last = show("--use-last-try")  # the last try, spent wrong: the PIN locks
    assert last.returncode == 1 and "locked" in last.stderr and "municipal office" in last.stderr, last.stderr
    locked = show("--use-last-try")
    assert locked.returncode == 1
    assert locked.stderr.splitlines()[-1].startswith("error (pin_locked): This PIN is locked")
    assert "municipal office" in locked.stderr
    assert VirtualCard.load(phone).tries_left(CertificateKind.AUTH) == 0
    assert "4321" not in warned.stderr + last.stderr + locked.stderr


def test_card_show_without_a_card_file_explains(tmp_path):
    result = bridge("card", "show", "--reader", "virtual", "--card", tmp_path / "none.json")
    assert result.returncode == 1 and "card_file_missing" in result.stderr and "Traceback" not in result.stderr


def test_card_export_writes_the_auth_certificate_as_pem_without_a_pin(card_file):
    result = bridge("card", "export", "--reader", "virtual", "--card", card_file)
    assert result.returncode == 0, result.stderr
    exported = x509.load_pem_x509_certificate(result.stdout.encode())
    on_card = bytes.fromhex(json.loads(card_file.read_text())["files"]["000A"])
    assert exported.public_bytes(Encoding.DER) == on_card


def test_card_export_of_the_signing_certificate_needs_the_signing_pin(card_file, tmp_path):
    out = tmp_path / "signing.pem"
    wrong = bridge("card", "export", "--reader", "virtual", "--card", card_file, "--signing", "--pin-stdin",
                   "--out", out, stdin="ZZZ999\n")
    assert wrong.returncode == 1 and "wrong_pin" in wrong.stderr and not out.exists()
    assert "ZZZ999" not in wrong.stderr + wrong.stdout
    ok = bridge("card", "export", "--reader", "virtual", "--card", card_file, "--signing", "--pin-stdin",
                "--out", out, stdin="ABC123\n")
    assert ok.returncode == 0, ok.stderr
    assert parse_certificate(x509.load_pem_x509_certificate(out.read_bytes()).public_bytes(Encoding.DER)).kind \
        is CertificateKind.SIGNING
    assert out.stat().st_mode & 0o077 == 0 and "date of birth" in ok.stderr
    again = bridge("card", "export", "--reader", "virtual", "--card", card_file, "--signing", "--pin-stdin",
                   "--out", out, stdin="ABC123\n")
    assert again.returncode == 1 and "exists" in again.stderr


def test_card_export_keeps_the_signing_pins_last_try_without_use_last_try(card_file):
    for _ in range(4):  # the signing PIN has 5 tries
        bridge("card", "export", "--reader", "virtual", "--card", card_file, "--signing", "--pin-stdin",
               stdin="ZZZ999\n")
    assert VirtualCard.load(card_file).tries_left(CertificateKind.SIGNING) == 1
    kept = bridge("card", "export", "--reader", "virtual", "--card", card_file, "--signing", "--pin-stdin",
                  stdin="ABC123\n")
    assert kept.returncode == 1 and "last_try_not_confirmed" in kept.stderr and "--use-last-try" in kept.stderr
    assert VirtualCard.load(card_file).tries_left(CertificateKind.SIGNING) == 1
    used = bridge("card", "export", "--reader", "virtual", "--card", card_file, "--signing", "--pin-stdin",
                  "--use-last-try", stdin="ABC123\n")
    assert used.returncode == 0 and "BEGIN CERTIFICATE" in used.stdout
    assert VirtualCard.load(card_file).tries_left(CertificateKind.SIGNING) == 5


def test_card_export_from_a_phone_needs_its_pin_first(make_card):
    phone = make_card(smartphone=True)
    result = bridge("card", "export", "--reader", "virtual", "--card", phone, "--pin-stdin", stdin="1234\n")
    assert result.returncode == 0 and "BEGIN CERTIFICATE" in result.stdout, result.stderr

"""The bridge CLI at a real terminal (a pseudo-terminal from the pty module), where the PIN safety rules of
docs/bridge.md matter most: with `--pin-stdin` nothing is ever asked interactively, and the last PIN try is
spent only with `--use-last-try`."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from jpki.profile import CertificateKind
from nfc_bridge.apdu import WrongPin
from nfc_bridge.client import JpkiClient
from nfc_bridge.transports.virtual import VirtualTransport
from nfc_bridge.virtual_card import VirtualCard
from tests.idp_flow import Browser

ROOT = Path(__file__).resolve().parents[1]
AUTH = CertificateKind.AUTH


def at_a_terminal(args: list, typed: str = "", answers: tuple[tuple[str, str], ...] = (),
                  timeout: float = 60) -> tuple[int, str]:
    """Run `python -m nfc_bridge ARGS` in its own session whose controlling terminal is a pseudo-terminal (stdin,
    stdout and stderr on it, as in a shell). `typed` is typed at once, ahead of any prompt; each (prompt, text) of
    `answers` is typed when `prompt` has appeared. Returns the exit status and everything the terminal showed."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "nfc_bridge", *map(str, args)], stdin=terminal,
                               stdout=terminal, stderr=terminal, cwd=ROOT, env=env, start_new_session=True,
                               preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(terminal)
    if typed:
        os.write(controller, typed.encode())
    pending = list(answers)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
                if pending and pending[0][0].encode() in shown:
                    os.write(controller, pending.pop(0)[1].encode())
            elif process.poll() is not None:
                break
        status = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return status, shown.decode(errors="replace")


def one_try_left(path: Path) -> None:
    client = JpkiClient.connect(VirtualTransport.open(path))
    for _ in range(2):
        with pytest.raises(WrongPin):
            client.verify_pin(AUTH, "9999")
    assert VirtualCard.load(path).tries_left(AUTH) == 1


@pytest.fixture
def handle_url(idp_service):
    client, _ = idp_service.services.clients.add("Example Shop", ["https://rp.example.jp/callback"])
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": "https://rp.example.jp/callback",
              "scope": "openid", "state": "s", "nonce": "n-" + os.urandom(8).hex(),
              "code_challenge": create_s256_code_challenge("v" * 43), "code_challenge_method": "S256"}
    return Browser(idp_service.url).start(f"{idp_service.url}/authorize?" + requests.compat.urlencode(params))


@pytest.fixture
def card(make_card, idp_service):
    path = make_card()
    idp_service.register_card(path)
    one_try_left(path)
    return path


def test_pin_stdin_at_a_terminal_never_asks_and_keeps_the_last_try(card, handle_url):
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", card, "--pin-stdin"],
                                  typed="1234\nYES\n")  # someone who would say YES if asked
    assert status == 1, shown
    assert "Type YES" not in shown
    assert "last_try_not_confirmed" in shown and "pass --use-last-try" in shown
    assert VirtualCard.load(card).tries_left(AUTH) == 1


def test_use_last_try_spends_it_when_asked_to(card, handle_url):
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", card, "--pin-stdin",
                                   "--use-last-try"], typed="1234\n")
    assert status == 0, shown
    assert "Done:" in shown and "Type YES" not in shown
    assert VirtualCard.load(card).tries_left(AUTH) == 3  # the right PIN restores the counter


def test_the_pin_typed_for_pin_stdin_is_not_echoed(card, handle_url):
    _, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", card, "--pin-stdin"],
                             answers=(("Enter your", "1234\n"),))
    assert "Enter your user-authentication PIN" in shown and "1234" not in shown


def test_interactive_prompt_still_needs_yes_for_the_last_try(card, handle_url):
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", card],
                                  answers=(("Enter your", "1234\n"), ("Type YES", "no\n")))
    assert status == 1 and "last_try_not_confirmed" in shown, shown
    assert "1234" not in shown
    assert VirtualCard.load(card).tries_left(AUTH) == 1


def test_interactive_yes_spends_the_last_try(card, handle_url):
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", card],
                                  answers=(("Enter your", "1234\n"), ("Type YES", "YES\n")))
    assert status == 0 and "Done:" in shown, shown
    assert VirtualCard.load(card).tries_left(AUTH) == 3


def test_card_show_on_a_phone_with_one_try_left_keeps_it(make_card):
    phone = make_card(smartphone=True)
    one_try_left(phone)
    status, shown = at_a_terminal(["card", "show", "--reader", "virtual", "--card", phone, "--pin-stdin"],
                                  typed="1234\nYES\n")
    assert status == 1 and "last_try_not_confirmed" in shown and "Type YES" not in shown, shown
    assert VirtualCard.load(phone).tries_left(AUTH) == 1


KEEP = "Keep the card on the reader"
ERASE = "\r\x1b[K"


def test_card_show_at_a_terminal_says_to_keep_the_card_then_clears_it(card_file):
    status, shown = at_a_terminal(["card", "show", "--reader", "virtual", "--card", card_file])
    assert status == 0, shown
    assert KEEP in shown and ERASE in shown
    # The spinner's line is erased before the summary: nothing of it is left on the summary's lines.
    summary = shown[shown.index("This is a My Number Card."):]
    assert KEEP not in summary and "\x1b" not in summary
    assert shown.rindex(ERASE) < shown.index("This is a My Number Card.")


def test_login_at_a_terminal_shows_progress_and_asks_for_the_pin_on_a_clear_line(make_card, idp_service,
                                                                               handle_url):
    fresh = make_card()
    idp_service.register_card(fresh)
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", fresh],
                                  answers=(("Enter your", "1234\n"),))
    assert status == 0 and "Done:" in shown, shown
    assert f"{KEEP}… (waiting for the card)" in shown and f"{KEEP}… (signing with the card)" in shown
    prompt = shown.index("Enter your")
    assert shown.rfind(ERASE, 0, prompt) > shown.rfind(KEEP, 0, prompt)  # erased before the prompt
    assert KEEP not in shown[shown.index("Done:"):] and "1234" not in shown


def test_a_wrong_pin_at_a_terminal_says_the_tries_left_in_words(make_card, idp_service, handle_url):
    fresh = make_card()
    idp_service.register_card(fresh)
    status, shown = at_a_terminal(["login", handle_url, "--reader", "virtual", "--card", fresh],
                                  answers=(("Enter your", "4321\n"),))
    assert status == 1, shown
    assert ("error (wrong_pin): Wrong PIN. 2 tries left before the card locks this PIN. "
            "Nothing was sent to the website.") in shown
    assert "4321" not in shown
    assert VirtualCard.load(fresh).tries_left(AUTH) == 2

"""`python -m nfc_bridge`: make and inspect virtual cards, look at a real card.

    card new  --out CARD.json --pin 1234 --sign-pin ABC123 [--name N --address A --birthdate YYYY-MM-DD
              --sex S] [--smartphone]
    card show   --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--pin-stdin] [--use-last-try]
    card export --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--signing] [--out FILE]
                [--pin-stdin] [--use-last-try]
    login URL_OR_HANDLE --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--pin-stdin]
                [--use-last-try]

Every failure ends in one plain sentence on stderr and exit status 1; never a traceback, never a PIN.

PIN safety (docs/bridge.md): the last try of a PIN is spent only with `--use-last-try`, or after `YES` typed at
the terminal when the PIN itself was typed at a prompt. `--pin-stdin` is for scripts and never asks for
confirmation, even when standard input is a terminal (where the PIN line is read without echo, after a prompt).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
import termios
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from jpki.certificate import CertificateError, parse_certificate

# `card new` makes virtual cards from the development CA: a development tool, like nfc_bridge/card_file.py. The
# login and card-reading commands use neither.
from jpki.devca import DevCA, UnderageForSigning
from jpki.issuer import DEFAULT_REVOCATION_URL
from jpki.profile import AUTH_PIN_TRIES, CertificateKind
from nfc_bridge.apdu import CardError, WrongPin
from nfc_bridge.card_file import Holder, new_card_state, write_card_file
from nfc_bridge.client import JpkiClient
from nfc_bridge.login import LoginFailed, answer_login, fetch_login, handle_url, plain_text
from nfc_bridge.pin import LastTryNotConfirmed, pin_label
from nfc_bridge.readers import READERS, open_reader


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nfc_bridge", description="My Number Card bridge")
    commands = parser.add_subparsers(dest="command", required=True)
    card = commands.add_parser("card", help="virtual cards and card information").add_subparsers(
        dest="card_command", required=True)

    new = card.add_parser("new", help="create a virtual My Number Card issued by the dev CA")
    new.add_argument("--out", type=Path, required=True, help="where to write the card's JSON file")
    new.add_argument("--pin", required=True, help="user-authentication PIN, 4 digits")
    new.add_argument("--sign-pin", required=True, help="signing PIN, 6-16 of 0-9 A-Z")
    defaults = Holder()
    new.add_argument("--name", default=defaults.name)
    new.add_argument("--address", default=defaults.address)
    new.add_argument("--birthdate", type=dt.date.fromisoformat, default=defaults.birthdate,
                     help="YYYY-MM-DD; under 15 gets no signing certificate")
    new.add_argument("--sex", default=defaults.sex, choices=("1", "2", "9"), help="1 male, 2 female, 9 other")
    new.add_argument("--smartphone", action="store_true", help="a smartphone's JPKI AP instead of a card")
    new.add_argument("--pki-dir", type=Path, default=Path(os.environ.get("MYKEY_VAR", "var")) / "pki")
    new.add_argument("--force", action="store_true", help="replace an existing card file")

    show = card.add_parser("show", help="the auth certificate's summary and the PIN tries left")
    _card_options(show, "read the PIN (a phone's, before its certificate) from standard input")

    export = card.add_parser("export", help="write a certificate from the card as PEM")
    _card_options(export, "read the PIN from standard input")
    export.add_argument("--signing", action="store_true",
                        help="the signing certificate (needs the signing PIN; it holds the four basic facts)")
    export.add_argument("--out", type=Path, help="write to this file (created, never replaced) instead of stdout")

    login = commands.add_parser("login", help="answer a login with the card (the link or handle from the login page)")
    login.add_argument("url_or_handle")
    _card_options(login, "read the PIN (and then the signing PIN, if asked) from standard input, one per line")
    return parser


def _card_options(parser: argparse.ArgumentParser, pin_stdin_help: str) -> None:
    parser.add_argument("--reader", choices=READERS, required=True)
    parser.add_argument("--card", type=Path, help="the virtual card's file (with --reader virtual)")
    parser.add_argument("--device", help="nfcpy device path (usb, usb:054c:06c1) or PC/SC reader name")
    parser.add_argument("--pin-stdin", action="store_true", help=pin_stdin_help + "; never asks for confirmation")
    parser.add_argument("--use-last-try", action="store_true",
                        help="allow a PIN's last try to be spent (a wrong PIN then locks it until the municipal "
                             "office resets it); without this, only YES typed at the PIN prompt's terminal allows it")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "login":
            return login(args)
        if args.card_command == "new":
            return card_new(args)
        if args.card_command == "export":
            return card_export(args)
        return card_show(args)
    except LoginFailed as exc:
        print(f"Login failed ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    except WrongPin as exc:
        print(f"error (wrong_pin): {exc.message} Nothing was sent to the website.", file=sys.stderr)
        return 1
    except LastTryNotConfirmed as exc:
        how = "pass --use-last-try" if args.pin_stdin else "type YES when asked, or pass --use-last-try"
        print(f"error ({exc.code}): {exc.message} To use it, {how}.", file=sys.stderr)
        return 1
    except (CardError, CertificateError) as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    except (UnderageForSigning, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def card_new(args) -> int:
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force to replace it", file=sys.stderr)
        return 1
    ca = DevCA.load_or_create(args.pki_dir, os.environ.get("REVOCATION_URL", DEFAULT_REVOCATION_URL))
    holder = Holder(name=args.name, address=args.address, birthdate=args.birthdate, sex=args.sex)
    state = new_card_state(ca, args.pin, args.sign_pin, holder, smartphone=args.smartphone)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_card_file(args.out, state)
    kind_of_card = "smartphone JPKI AP" if args.smartphone else "My Number Card"
    print(f"Created a virtual {kind_of_card} in {args.out} (dev CA in {args.pki_dir}).")
    for fid, kind in (("000A", CertificateKind.AUTH), ("0001", CertificateKind.SIGNING)):
        der = state["files"].get(fid)
        if der is None:
            print(f"  {kind.value:8} none (holders under 15 get no signing certificate)")
            continue
        cert = parse_certificate(bytes.fromhex(der))
        print(f"  {kind.value:8} serial {cert.serial:X}  valid {cert.not_before:%Y-%m-%d} to "
              f"{cert.not_after:%Y-%m-%d}")
    print("The serials are personal data: keep them out of logs and tickets.")
    return 0


def card_show(args) -> int:
    with open_reader(args.reader, args.card, args.device) as transport:
        client = JpkiClient.connect(transport)
        tries = client.pin_tries_left(CertificateKind.AUTH)
        if client.needs_pin_to_read(CertificateKind.AUTH):
            print("This is a smartphone: its certificate can be read only after the PIN.")
            client.verify_pin(CertificateKind.AUTH, read_pin(CertificateKind.AUTH, tries, args.pin_stdin),
                              confirm_last_try=last_try_confirmation(args))
            tries = AUTH_PIN_TRIES
        cert = parse_certificate(client.read_certificate(CertificateKind.AUTH))
    print(f"card          {'smartphone JPKI AP' if client.is_smartphone else 'My Number Card'}")
    print("certificate   user authentication (利用者証明用電子証明書)")
    print(f"issuer        {cert.issuer.rfc4514_string()}")
    print(f"valid         {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}")
    print(f"PIN tries     {tries} of {AUTH_PIN_TRIES} left" + ("  (LOCKED)" if tries == 0 else ""))
    return 0


def card_export(args) -> int:
    """A certificate as PEM: the auth certificate by default (readable without a PIN, except on a phone), the signing
    certificate with --signing, only after the signing PIN and under the same PIN safety rules as a login."""
    kind = CertificateKind.SIGNING if args.signing else CertificateKind.AUTH
    if args.out is not None and args.out.exists():
        print(f"error: {args.out} exists; choose another file", file=sys.stderr)
        return 1
    with open_reader(args.reader, args.card, args.device) as transport:
        client = JpkiClient.connect(transport)
        if client.needs_pin_to_read(kind):
            client.verify_pin(kind, read_pin(kind, client.pin_tries_left(kind), args.pin_stdin),
                              confirm_last_try=last_try_confirmation(args))
        pem = parse_certificate(client.read_certificate(kind)).certificate.public_bytes(Encoding.PEM).decode()
    if args.out is None:
        sys.stdout.write(pem)
    else:
        # Exclusive create, owner-only: a signing certificate holds the holder's name, address, birth date and sex.
        with os.fdopen(os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(pem)
        print(f"Wrote the {kind.value} certificate to {args.out}.", file=sys.stderr)
    if kind is CertificateKind.SIGNING:
        print("The signing certificate holds your name, address, date of birth and sex: share it only where you "
              "would show your card.", file=sys.stderr)
    return 0


def login(args) -> int:
    url = handle_url(args.url_or_handle)
    step("Fetching the login…")
    request = fetch_login(url)
    print(f"Logging in to: {request.rp_name}")
    print(f"Check code:    {request.short_code}   (your browser shows the same code)")
    if request.share:
        print(f"Shared:        {', '.join(request.share)} (from your signing certificate)")
    answer = answer_login(
        request,
        open_transport=lambda: open_reader(args.reader, args.card, args.device),
        ask_pin=lambda kind, tries: read_pin(kind, tries, args.pin_stdin),
        confirm_last_try=last_try_confirmation(args),
        say=step,
    )
    print(f"Done: {plain_text(answer.get('message'), 'Verified.')}")
    return 0


def step(text: str) -> None:
    print(f"  … {text}", flush=True)


def read_pin(kind: CertificateKind, tries_left: int, from_stdin: bool) -> str:
    """Ask for a PIN without echo (or one line of stdin), warning how many tries are left."""
    if tries_left <= 2:
        print(f"Warning: {tries_left} PIN {'try' if tries_left == 1 else 'tries'} left.", file=sys.stderr)
    prompt = f"Enter your {pin_label(kind)}: "
    if from_stdin:
        return _stdin_line_without_echo(prompt).rstrip("\r\n")
    return getpass.getpass(prompt)


def _stdin_line_without_echo(prompt: str) -> str:
    """One line of stdin; at a terminal, with echo off so the PIN is not shown, and the prompt shown only once echo
    is off. Lines typed ahead are kept (TCSANOW, not getpass's TCSAFLUSH): a script may have sent them already."""
    if not sys.stdin.isatty():
        return sys.stdin.readline()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        print(prompt, end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        print(file=sys.stderr)
        return line
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def last_try_confirmation(args) -> Callable[[], bool]:
    """Who may allow a PIN's last try (docs/bridge.md, PIN safety): `--use-last-try` said so in advance; otherwise
    only a person answering YES at the terminal where they typed the PIN — never with `--pin-stdin`, whose input
    may be a script's even when it is a terminal."""
    if args.use_last_try:
        return lambda: True
    if args.pin_stdin:
        return lambda: False
    return confirm_last_try_at_terminal


def confirm_last_try_at_terminal() -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input("This is the LAST try: a wrong PIN locks the card. Type YES to continue: ")
    return answer.strip() == "YES"

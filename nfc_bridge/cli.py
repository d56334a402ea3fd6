"""`python -m nfc_bridge`: make and inspect virtual cards, look at a real card.

    card new  --out CARD.json --pin 1234 --sign-pin ABC123 [--name N --address A --birthdate YYYY-MM-DD
              --sex S] [--smartphone]
    card show --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--pin-stdin]
    login URL_OR_HANDLE --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--pin-stdin]

Every failure ends in one plain sentence on stderr and exit status 1; never a traceback, never a PIN.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
from pathlib import Path

from jpki.certificate import CertificateError, parse_certificate
from jpki.devca import DEFAULT_REVOCATION_URL, DevCA, UnderageForSigning
from jpki.profile import AUTH_PIN_TRIES, CertificateKind
from nfc_bridge.apdu import CardError, WrongPin
from nfc_bridge.client import JpkiClient
from nfc_bridge.login import LoginFailed, answer_login, fetch_login, handle_url
from nfc_bridge.pin import pin_label
from nfc_bridge.readers import READERS, open_reader
from nfc_bridge.virtual_card import Holder, new_card_state, write_card_file


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
    show.add_argument("--reader", choices=READERS, required=True)
    show.add_argument("--card", type=Path, help="the virtual card's file (with --reader virtual)")
    show.add_argument("--device", help="nfcpy device path (usb, usb:054c:06c1) or PC/SC reader name")
    show.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")

    login = commands.add_parser("login", help="answer a login with the card (the link or handle from the login page)")
    login.add_argument("url_or_handle")
    login.add_argument("--reader", choices=READERS, required=True)
    login.add_argument("--card", type=Path, help="the virtual card's file (with --reader virtual)")
    login.add_argument("--device", help="nfcpy device path (usb, usb:054c:06c1) or PC/SC reader name")
    login.add_argument("--pin-stdin", action="store_true",
                       help="read the PIN (and then the signing PIN, if asked) from standard input, one per line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "login":
            return login(args)
        if args.card_command == "new":
            return card_new(args)
        return card_show(args)
    except LoginFailed as exc:
        print(f"Login failed ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    except WrongPin as exc:
        print(f"error (wrong_pin): {exc.message} Nothing was sent to the website.", file=sys.stderr)
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
                              confirm_last_try=confirm_last_try)
            tries = AUTH_PIN_TRIES
        cert = parse_certificate(client.read_certificate(CertificateKind.AUTH))
    print(f"card          {'smartphone JPKI AP' if client.is_smartphone else 'My Number Card'}")
    print("certificate   user authentication (利用者証明用電子証明書)")
    print(f"issuer        {cert.issuer.rfc4514_string()}")
    print(f"valid         {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}")
    print(f"PIN tries     {tries} of {AUTH_PIN_TRIES} left" + ("  (LOCKED)" if tries == 0 else ""))
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
        confirm_last_try=confirm_last_try,
        say=step,
    )
    print(f"Done: {answer.get('message', 'verified')}")
    return 0


def step(text: str) -> None:
    print(f"  … {text}", flush=True)


def read_pin(kind: CertificateKind, tries_left: int, from_stdin: bool) -> str:
    """Ask for a PIN without echo (or one line of stdin), warning how many tries are left."""
    if tries_left <= 2:
        print(f"Warning: {tries_left} PIN {'try' if tries_left == 1 else 'tries'} left.", file=sys.stderr)
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass(f"Enter your {pin_label(kind)}: ")


def confirm_last_try() -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input("This is the LAST try: a wrong PIN locks the card. Type YES to continue: ")
    return answer.strip() == "YES"

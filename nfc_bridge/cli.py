"""`python -m nfc_bridge`: make and inspect virtual cards, look at a real card.

    card new  --out CARD.json --pin 1234 --sign-pin ABC123 [--name N --address A --birthdate YYYY-MM-DD
              --sex S] [--smartphone]
    card show   --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--pin-stdin] [--use-last-try]
                [--json]
    card export --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--signing] [--out FILE]
                [--pin-stdin] [--use-last-try]
    login URL_OR_HANDLE --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--pin-stdin]
                [--use-last-try]
    history URL --reader {virtual,usb,pcsc} [--card CARD.json] [--device PATH] [--pin-stdin] [--use-last-try]
                (open your access record: the card signs the key to it; never part of a login)

Every failure ends in one plain sentence on stderr and exit status 1; never a traceback, never a PIN. A wrong PIN
is said with the tries left (nfc_bridge/pin.py: a warning at one, what to do when locked).

While the card is being read or is signing (about a second over NFC) a one-line spinner on stderr says to keep the
card on the reader — only when stderr is a terminal, and cleared before anything else is printed or asked, so
scripts and piped output never see it. `card show` prints a summary for a person; `--json` prints the same facts
as one JSON object for scripts. Neither shows a certificate serial (personal data) or the four basic facts.

PIN safety (docs/bridge.md): the last try of a PIN is spent only with `--use-last-try`, or after `YES` typed at
the terminal when the PIN itself was typed at a prompt. `--pin-stdin` is for scripts and never asks for
confirmation, even when standard input is a terminal (where the PIN line is read without echo, after a prompt).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
import termios
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from jpki.certificate import CertificateError, parse_certificate

# `card new` makes virtual cards from the development CA: a development tool, like nfc_bridge/card_file.py. The
# login and card-reading commands use neither.
from jpki.devca import DevCA, UnderageForSigning
from jpki.issuer import DEFAULT_REVOCATION_URL
from jpki.profile import AUTH_PIN_TRIES, SIGN_PIN_TRIES, CertificateKind
from nfc_bridge.apdu import CardError, PinLocked, WrongPin
from nfc_bridge.card_file import Holder, new_card_state, write_card_file
from nfc_bridge.client import JpkiClient
from nfc_bridge.history import answer_history, fetch_history
from nfc_bridge.login import LoginFailed, answer_login, fetch_login, handle_url, plain_text
from nfc_bridge.pin import LOCKED_SENTENCE, LastTryNotConfirmed, pin_label, wrong_pin_sentence
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

    show = card.add_parser("show", help="what is on the card: its certificates and the PIN tries left")
    _card_options(show, "read the PIN (a phone's, before its certificate) from standard input")
    show.add_argument("--json", action="store_true", help="one JSON object for scripts instead of the summary")

    export = card.add_parser("export", help="write a certificate from the card as PEM")
    _card_options(export, "read the PIN from standard input")
    export.add_argument("--signing", action="store_true",
                        help="the signing certificate (needs the signing PIN; it holds the four basic facts)")
    export.add_argument("--out", type=Path, help="write to this file (created, never replaced) instead of stdout")

    login = commands.add_parser("login", help="answer a login with the card (the link or handle from the login page)")
    login.add_argument("url_or_handle")
    _card_options(login, "read the PIN (and then the signing PIN, if asked) from standard input, one per line")
    login.add_argument("--approve-signing", action="store_true",
                       help="approve in advance the documents the website asks you to sign (they are still shown)")

    history = commands.add_parser("history", help="open your access record on the platform with the card (the link "
                                                  "from the account page); not a login")
    history.add_argument("url")
    _card_options(history, "read the PIN from standard input, one line")
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
        return _run(args)
    finally:
        WORKING.clear()


def _run(args) -> int:
    try:
        if args.command == "login":
            return login(args)
        if args.command == "history":
            return open_history(args)
        if args.card_command == "new":
            return card_new(args)
        if args.card_command == "export":
            return card_export(args)
        return card_show(args)
    except LoginFailed as exc:
        WORKING.clear()
        what = "Opening the access record" if args.command == "history" else "Login"
        print(f"{what} failed ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    except WrongPin as exc:
        WORKING.clear()
        after = {"login": " Nothing was sent to the website.", "history": " Nothing was sent."}.get(args.command, "")
        print(f"error ({exc.code}): {wrong_pin_sentence(exc.tries_left)}{after}", file=sys.stderr)
        return 1
    except PinLocked as exc:
        WORKING.clear()
        print(f"error ({exc.code}): {LOCKED_SENTENCE}", file=sys.stderr)
        return 1
    except LastTryNotConfirmed as exc:
        WORKING.clear()
        how = "pass --use-last-try" if args.pin_stdin else "type YES when asked, or pass --use-last-try"
        print(f"error ({exc.code}): {exc.message} To use it, {how}.", file=sys.stderr)
        return 1
    except (CardError, CertificateError) as exc:
        WORKING.clear()
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    except (UnderageForSigning, OSError) as exc:
        WORKING.clear()
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
    """What is on the card, without a PIN on a card (a phone's certificate is read only after its PIN): the auth
    certificate's issuer and validity, and the tries left of both PINs. The signing certificate is not read: it
    needs the signing PIN and holds the four basic facts (`card export --signing` writes it)."""
    WORKING.show(KEEP_ON_READER)
    with open_reader(args.reader, args.card, args.device) as transport:
        client = JpkiClient.connect(transport)
        tries = client.pin_tries_left(CertificateKind.AUTH)
        if client.needs_pin_to_read(CertificateKind.AUTH):
            WORKING.clear()
            print("This is a smartphone: its certificate can be read only after the PIN.", file=sys.stderr)
            client.verify_pin(CertificateKind.AUTH, read_pin(CertificateKind.AUTH, tries, args.pin_stdin),
                              confirm_last_try=last_try_confirmation(args))
            WORKING.show(KEEP_ON_READER)
            tries = AUTH_PIN_TRIES
        cert = parse_certificate(client.read_certificate(CertificateKind.AUTH))
        signing_tries = _tries_or_none(client, CertificateKind.SIGNING)
    WORKING.clear()
    summary = {
        "card": "smartphone" if client.is_smartphone else "card",
        "certificates": [{
            "kind": CertificateKind.AUTH.value,
            "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_before.isoformat(),
            "not_after": cert.not_after.isoformat(),
            "status": _validity(cert.not_before, cert.not_after),
        }],
        "pin_tries_left": {CertificateKind.AUTH.value: {"left": tries, "of": AUTH_PIN_TRIES},
                           CertificateKind.SIGNING.value: None if signing_tries is None
                           else {"left": signing_tries, "of": SIGN_PIN_TRIES}},
    }
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    print(f"This is a {'smartphone with a JPKI app' if client.is_smartphone else 'My Number Card'}.")
    print()
    print("User-authentication certificate (利用者証明用電子証明書) — used to log in")
    print(f"  valid      {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}  "
          f"({_VALIDITY_WORDS[summary['certificates'][0]['status']]})")
    print(f"  issued by  {_issuer_name(cert.issuer)}")
    print(f"  PIN        {_tries_words(tries, AUTH_PIN_TRIES)}")
    print()
    if signing_tries is None:
        print("Signing certificate (署名用電子証明書) — none on this card (holders under 15 get none)")
    else:
        print("Signing certificate (署名用電子証明書) — read only with the signing PIN (card export --signing)")
        print(f"  PIN        {_tries_words(signing_tries, SIGN_PIN_TRIES)}")
    return 0


_VALIDITY_WORDS = {"valid": "valid now", "expired": "EXPIRED: renew it at the municipal office",
                   "not_yet_valid": "not valid yet"}


def _validity(not_before: dt.datetime, not_after: dt.datetime) -> str:
    now = dt.datetime.now(dt.UTC)
    if now < not_before:
        return "not_yet_valid"
    return "expired" if now > not_after else "valid"


def _issuer_name(issuer: x509.Name) -> str:
    """The issuer's organization (and unit) for a person; the whole DN when it has neither."""
    parts = [a.value for oid in (NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME)
             for a in issuer.get_attributes_for_oid(oid)]
    return ", ".join(str(p) for p in parts) or issuer.rfc4514_string()


def _tries_words(left: int, of: int) -> str:
    if left == 0:
        return "LOCKED — only the municipal office can reset it"
    if left == 1:
        return f"1 of {of} tries left (warning: a wrong PIN now locks it)"
    return f"{left} of {of} tries left"


def _tries_or_none(client: JpkiClient, kind: CertificateKind) -> int | None:
    """Tries left of `kind`'s PIN (a query that costs none), or None when the card has no such PIN."""
    try:
        return client.pin_tries_left(kind)
    except CardError:
        return None


def card_export(args) -> int:
    """A certificate as PEM: the auth certificate by default (readable without a PIN, except on a phone), the signing
    certificate with --signing, only after the signing PIN and under the same PIN safety rules as a login."""
    kind = CertificateKind.SIGNING if args.signing else CertificateKind.AUTH
    if args.out is not None and args.out.exists():
        print(f"error: {args.out} exists; choose another file", file=sys.stderr)
        return 1
    WORKING.show(KEEP_ON_READER)
    with open_reader(args.reader, args.card, args.device) as transport:
        client = JpkiClient.connect(transport)
        if client.needs_pin_to_read(kind):
            client.verify_pin(kind, read_pin(kind, client.pin_tries_left(kind), args.pin_stdin),
                              confirm_last_try=last_try_confirmation(args))
            WORKING.show(KEEP_ON_READER)
        pem = parse_certificate(client.read_certificate(kind)).certificate.public_bytes(Encoding.PEM).decode()
    WORKING.clear()
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
    if request.documents:
        print(f"To sign:       {len(request.documents)} document(s), with your signing key (signing PIN)")
        for document in request.documents:
            print(f"               - {document.label}   [{document.fingerprint}]")
        print("               The website will receive your signing certificate, which contains your name,")
        print("               address, date of birth and sex.")
    answer = answer_login(
        request,
        open_transport=lambda: open_reader(args.reader, args.card, args.device),
        ask_pin=lambda kind, tries: read_pin(kind, tries, args.pin_stdin),
        confirm_last_try=last_try_confirmation(args),
        say=step,
        approve_signing=signing_approval(args),
    )
    print(f"Done: {plain_text(answer.get('message'), 'Verified.')}")
    return 0


def open_history(args) -> int:
    """Open the holder's access record: the card signs the key to it (nfc_bridge/history.py). Said as what it is."""
    step("Fetching the request…")
    request = fetch_history(args.url)
    print(f"Opening your access record at: {request.origin}")
    print("  This is NOT a login: no website receives anything. Your card makes the key that only it can make,")
    print("  and the record is shown once in the browser that asked.")
    print(f"Check code:    {request.short_code}   (your browser shows the same code)")
    answer = answer_history(
        request,
        open_transport=lambda: open_reader(args.reader, args.card, args.device),
        ask_pin=lambda kind, tries: read_pin(kind, tries, args.pin_stdin),
        confirm_last_try=last_try_confirmation(args),
        say=step,
    )
    print(f"Done: {plain_text(answer.get('message'), 'Opened.')}")
    return 0


# The steps of a login during which the card is in use: after them the spinner asks to keep it on the reader.
_CARD_STEPS = ("Waiting for the card", "Reading", "Signing")  # "Signing the key…" (history) too
KEEP_ON_READER = "Keep the card on the reader…"


def step(text: str) -> None:
    WORKING.clear()
    print(f"  … {text}", flush=True)
    if text.startswith(_CARD_STEPS):
        WORKING.show(f"{KEEP_ON_READER} ({text.rstrip('…').lower()})")


class Working:
    """A one-line spinner on stderr while the card works, only when stderr is a terminal. `show` starts (or
    relabels) it, `clear` stops it and erases the line; both are cheap no-ops when there is nothing to do, so every
    prompt and every printed line can call `clear` first."""

    FRAMES = "|/-\\"
    INTERVAL = 0.12

    def __init__(self, stream=None):
        self._stream = stream
        self._text = ""
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def enabled(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def show(self, text: str) -> None:
        if not self.enabled():
            return
        with self._lock:
            self._text = text
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._spin, args=(self._stop,), daemon=True)
            self._thread.start()

    def clear(self) -> None:
        with self._lock:
            thread, stop = self._thread, self._stop
            self._thread = self._stop = None
        if thread is None:
            return
        stop.set()
        thread.join()
        self.stream.write("\r\x1b[K")
        self.stream.flush()

    def _spin(self, stop: threading.Event) -> None:
        frame = 0
        while True:
            self.stream.write(f"\r\x1b[K{self.FRAMES[frame % len(self.FRAMES)]} {self._text}")
            self.stream.flush()
            frame += 1
            if stop.wait(self.INTERVAL):
                return


WORKING = Working()


def read_pin(kind: CertificateKind, tries_left: int, from_stdin: bool) -> str:
    """Ask for a PIN without echo (or one line of stdin), warning how many tries are left; a locked PIN is said at
    once, never asked for."""
    WORKING.clear()
    if tries_left == 0:
        raise PinLocked(0x6983)
    if tries_left == 1:
        print("Warning: only 1 try is left for this PIN; a wrong PIN now locks it until the municipal office "
              "resets it.", file=sys.stderr)
    elif tries_left == 2:
        print("Note: 2 tries are left for this PIN.", file=sys.stderr)
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


def signing_approval(args) -> Callable[[], bool]:
    """Who may approve the documents shown (docs/bridge.md): `--approve-signing` in advance, or a person typing SIGN
    at the terminal — never with `--pin-stdin`, whose input may be a script's (as for the last PIN try)."""
    if args.approve_signing:
        return lambda: True
    if args.pin_stdin:
        return lambda: False
    return approve_signing_at_terminal


def approve_signing_at_terminal() -> bool:
    """The holder's yes to the documents shown, typed at the terminal; no terminal means no."""
    WORKING.clear()
    if not sys.stdin.isatty():
        return False
    return input("Type SIGN to sign these documents (anything else declines): ").strip() == "SIGN"


def confirm_last_try_at_terminal() -> bool:
    WORKING.clear()
    if not sys.stdin.isatty():
        return False
    answer = input("This is the LAST try: a wrong PIN locks the card. Type YES to continue: ")
    return answer.strip() == "YES"

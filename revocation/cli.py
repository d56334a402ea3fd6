"""`python -m revocation`: the revocation service's command line (configuration from the environment).

    serve [--host 127.0.0.1] [--port 8081]     development server (production: gunicorn 'revocation.app:create_app()')
    worker                                      apply stream events and publish CRL shards until stopped
    event '<json>'                              submit one event and apply it
    events import FILE.jsonl                    submit a file of events, one per line (exit 2 if any line refused)
    operators add NAME | list | disable NAME    operator API tokens (a new token is printed once)
    status ISSUER SERIAL                        a certificate's status, links, history and audit
    hold|release|revoke ISSUER SERIAL --comment TEXT [--reason R]
    stream                                      stream length, lag, pending entries, consumers
    crl rebuild                                 publish every CRL shard now

Failures end in one sentence on stderr, `error (code): message`, and exit status 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import signal
import sys
import threading
from pathlib import Path

from revocation.config import RevocationConfig
from revocation.events import MAX_EVENT_BYTES, EventRefused, parse_event_json
from revocation.operations import MANUAL_REASONS, OperationError, lookup, manual_action
from revocation.operators import OperatorError

IMPORT_CHUNK = 500


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m revocation", description="MyKey revocation service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="development server; use gunicorn in production")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8081)
    commands.add_parser("worker", help="apply events and publish CRLs until SIGTERM or Ctrl-C")
    event = commands.add_parser("event", help="submit one event (JSON)")
    event.add_argument("json")
    events = commands.add_parser("events", help="event files").add_subparsers(dest="action", required=True)
    imports = events.add_parser("import", help="submit a JSONL file")
    imports.add_argument("file", type=Path)
    operators = commands.add_parser("operators", help="operator tokens").add_subparsers(dest="action", required=True)
    operators.add_parser("add").add_argument("name")
    operators.add_parser("list")
    operators.add_parser("disable").add_argument("name")
    status = commands.add_parser("status", help="look a certificate up")
    status.add_argument("issuer", choices=("auth", "sign"))
    status.add_argument("serial")
    for action in ("hold", "release", "revoke"):
        manual = commands.add_parser(action, help=f"{action} a certificate by hand")
        manual.add_argument("issuer", choices=("auth", "sign"))
        manual.add_argument("serial")
        manual.add_argument("--comment", required=True)
        if action == "revoke":
            manual.add_argument("--reason", required=True, choices=sorted(MANUAL_REASONS))
    commands.add_parser("stream", help="event stream health")
    commands.add_parser("crl", help="CRLs").add_subparsers(dest="action", required=True).add_parser(
        "rebuild", help="publish every shard now")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = RevocationConfig.from_env()
    try:
        return run(args, config)
    except (OperationError, OperatorError) as error:
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        for item in getattr(error, "detail", None) or []:
            print(f"  event {item['index']}: {item['error']}: {item['message']}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error (io_error): {error.strerror or error.__class__.__name__}", file=sys.stderr)
        return 1


def run(args, config: RevocationConfig) -> int:
    if args.command == "serve":
        from revocation.app import create_app

        create_app(config).run(host=args.host, port=args.port, threaded=True)
        return 0
    from revocation.services import build_services

    services = build_services(config)
    actor = f"cli:{getpass.getuser()}"
    if args.command == "worker":
        return worker(services)
    if args.command == "event":
        return submit_lines(services, [(1, args.json)], actor, progress=False)
    if args.command == "events":
        with args.file.open(encoding="utf-8") as handle:
            lines = [(number, line) for number, line in enumerate(handle, 1) if line.strip()]
        return submit_lines(services, lines, actor, progress=True)
    if args.command == "operators":
        return operators(services, args)
    if args.command == "status":
        print(json.dumps(lookup(services, args.issuer, args.serial), indent=2, ensure_ascii=False))
        return 0
    if args.command in ("hold", "release", "revoke"):
        result = manual_action(services, actor, args.issuer, args.serial, args.command, args.comment,
                               getattr(args, "reason", None))
        print(f"{result['message']} Status: {result['status']}. Audit event {result['event_id']}.")
        return 0
    if args.command == "stream":
        print(json.dumps(services.stream.health(), indent=2))
        return 0
    services.crl.rebuild_all()
    print(f"Published {len(services.crl.status())} CRL shards.")
    return 0


def worker(services) -> int:
    from revocation.worker import run_worker

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("worker: applying events and publishing CRLs; Ctrl-C to stop", flush=True)
    run_worker(services, stop)
    print("worker: stopped")
    return 0


def submit_lines(services, lines: list[tuple[int, str]], actor: str, progress: bool) -> int:
    """Parse every line, submit the valid ones in chunks, apply them, and summarise."""
    refused: list[tuple[int, str, str]] = []
    valid = []
    for number, line in lines:
        try:
            if len(line) > MAX_EVENT_BYTES:
                raise EventRefused("event_too_large", f"An event may be at most {MAX_EVENT_BYTES} bytes.")
            valid.append(parse_event_json(line))
        except EventRefused as error:
            refused.append((number, error.code, error.message))
    counts = {"applied": 0, "duplicate": 0, "queued": 0}
    consumer = f"cli-{getpass.getuser()}"
    for start in range(0, len(valid), IMPORT_CHUNK):
        chunk = valid[start:start + IMPORT_CHUNK]
        entries = [services.stream.submit(event) for event in chunk]
        done = {d.entry_id: d.outcome for d in
                services.stream.drain(consumer, services.applier, limit=len(chunk) + 100, timeout_s=60)
                if d.outcome is not None}
        for event, entry in zip(chunk, entries, strict=True):
            outcome = done.get(entry)
            counts["queued" if outcome is None else "duplicate" if outcome.duplicate else "applied"] += 1
            if not progress:
                print(f"{event.event_id}: {outcome.summary() if outcome else 'queued for another worker'}")
        if progress:
            _progress(start + len(chunk), len(valid))
    services.audit.record(actor, "events_imported", {"lines": len(lines), **counts, "refused": len(refused)})
    if progress:
        print(file=sys.stderr)
    for number, code, message in refused:
        print(f"line {number}: refused ({code}): {message}", file=sys.stderr)
    summary = f"applied {counts['applied']}, duplicate {counts['duplicate']}, refused {len(refused)}"
    print(summary + (f", queued {counts['queued']}" if counts["queued"] else ""))
    return 2 if refused else 0


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events"
    if sys.stderr.isatty():
        print(f"\r{line}", end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def operators(services, args) -> int:
    if args.action == "add":
        token = services.operators.add(args.name)
        services.audit.record(f"cli:{getpass.getuser()}", "operator_added", {"operator": args.name})
        print(f"Operator {args.name} added. Token (shown only now; store it safely):")
        print(token)
        return 0
    if args.action == "list":
        for record in services.operators.list():
            print(f"{record['name']}  since {record['created_at']}  {'disabled' if record['disabled'] else 'active'}")
        return 0
    if not services.operators.disable(args.name):
        raise OperatorError("unknown_operator", "No active operator has that name.")
    services.audit.record(f"cli:{getpass.getuser()}", "operator_disabled", {"operator": args.name})
    print(f"Operator {args.name} disabled.")
    return 0

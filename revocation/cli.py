"""`python -m revocation`: the revocation service's command line (configuration from the environment).

    serve [--host 127.0.0.1] [--port 8081]     development server (production: gunicorn, docs/operators.md)
    worker [--only events|crl]                  apply stream events and publish CRL shards until SIGTERM or Ctrl-C
    event '<json>'                              submit one event and apply it (refused: exit 1, its code on stderr)
    events import FILE.jsonl                    submit a file of events, one per line; a refused line is reported
                                                by number and skipped, the lines after it are still submitted
    operators add NAME | list | disable NAME    operator API tokens (a new token is printed once)
    status ISSUER SERIAL                        a certificate's status, links, history and audit
    hold|release|revoke ISSUER SERIAL --comment TEXT [--reason R]
    stream                                      stream length, lag, pending entries, consumers
    crl rebuild                                 publish every CRL shard now

Exit status: 0 done; 1 failed, with one sentence on stderr, `error (code): message`, never a traceback;
2 (`events import` only) some lines were refused (each named by its number and code on stderr), every other
line was submitted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import signal
import socket
import sys
import threading
from pathlib import Path

import redis

from observability import logs
from operator_console.registry import OperatorError
from revocation.app import create_app
from revocation.config import RevocationConfig
from revocation.domain.events import EventRefused, parse_event_json
from revocation.operations.actions import MANUAL_REASONS, OperationError, lookup, manual_action, submit_parsed
from revocation.operations.event_import import import_events
from revocation.services import build_services
from revocation.storage.store import StorageLayoutError
from revocation.worker import ROLES, run_worker

EPILOG = ("Configuration comes from the environment (REDIS_URL, MYKEY_VAR, REVOCATION_URL, …; see "
          "revocation/config.py). Exit status: 0 done, 1 failed, 2 `events import` refused some lines.")


class CommandLine(argparse.ArgumentParser):
    """Usage errors end like every other failure (exit 1), so that exit 2 keeps its one meaning."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"error (usage): {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLine(prog="python -m revocation", description="MyKey revocation service", epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="development server; in production run "
                                              "gunicorn -w 2 -b HOST:PORT 'deploy.composition:revocation_app()'")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8081)
    commands.add_parser("worker", help="apply events and publish CRLs until SIGTERM or Ctrl-C (run one or more)"
                        ).add_argument("--only", choices=["events", "crl"],
                                       help="take one role: apply events, or publish CRL shards")
    event = commands.add_parser("event", help="submit one event (JSON) and apply it")
    event.add_argument("json", help="the event, as one JSON object")
    events = commands.add_parser("events", help="event files").add_subparsers(dest="action", required=True)
    imports = events.add_parser("import", help="submit a JSONL file, one event per line; exit 2 if any line "
                                               "was refused")
    imports.add_argument("file", type=Path)
    operators = commands.add_parser("operators", help="operator API tokens").add_subparsers(dest="action",
                                                                                           required=True)
    operators.add_parser("add", help="a new operator; prints its token once").add_argument("name")
    operators.add_parser("list", help="every operator, active or disabled")
    operators.add_parser("disable", help="disable an operator's tokens").add_argument("name")
    status = commands.add_parser("status", help="look a certificate up")
    _certificate_arguments(status)
    for action in ("hold", "release", "revoke"):
        manual = commands.add_parser(action, help=f"{action} a certificate by hand (audited)")
        _certificate_arguments(manual)
        manual.add_argument("--comment", required=True, help="why, for the audit log (at most 500 characters)")
        if action == "revoke":
            manual.add_argument("--reason", required=True, choices=sorted(MANUAL_REASONS))
    commands.add_parser("stream", help="event stream health")
    commands.add_parser("crl", help="CRLs").add_subparsers(dest="action", required=True).add_parser(
        "rebuild", help="publish every shard now")
    return parser


def _certificate_arguments(parser: argparse.ArgumentParser) -> None:
    # Checked by operations.actions.parse_certificate_ref, as for the API, so both give the same error codes.
    parser.add_argument("issuer", metavar="{auth,sign}")
    parser.add_argument("serial", help="the serial number in hexadecimal")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, RevocationConfig.from_env())
    except (OperationError, OperatorError, EventRefused, StorageLayoutError) as error:
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        for item in getattr(error, "detail", None) or []:
            print(f"  event {item['index']}: {item['error']}: {item['message']}", file=sys.stderr)
        return 1
    except redis.RedisError as error:
        # The exception's text can carry the URL (with a password) or a reply; its type is enough to act on.
        print(f"error (redis_unavailable): Redis did not answer ({error.__class__.__name__}); check REDIS_URL "
              "and that the server is running.", file=sys.stderr)
        return 1
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        print(f"error (io_error): {error.strerror or error.__class__.__name__}{where}", file=sys.stderr)
        return 1
    except ValueError as error:  # a malformed number in the environment (RevocationConfig.from_env)
        print(f"error (invalid_config): {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nerror (interrupted): stopped by Ctrl-C; events already submitted stay in the stream.",
              file=sys.stderr)
        return 1


def run(args, config: RevocationConfig) -> int:
    if args.command == "serve":
        create_app(config).run(host=args.host, port=args.port, threaded=True)
        return 0
    services = build_services(config)
    actor = f"cli:{getpass.getuser()}"
    if args.command == "worker":
        return worker(services, (args.only,) if args.only else ROLES)
    if args.command == "event":
        # surrogateescape: bytes that are not UTF-8 reach the JSON decoder, which refuses them as malformed_json
        event = parse_event_json(args.json.encode(errors="surrogateescape"))
        try:
            [result] = submit_parsed(services, [event], actor, cli_consumer())
        except OperationError as error:
            if error.detail and len(error.detail) == 1:  # one event: its own code, not the batch's
                raise EventRefused(error.detail[0]["error"], error.detail[0]["message"]) from None
            raise
        if result["refused"]:  # dead-lettered when applied (docs/operators.md, "The event stream")
            raise EventRefused(result["refused"]["error"], result["refused"]["message"])
        print(f"{result['event_id']}: {result['summary']}")
        return 0
    if args.command == "events":
        return import_events(services, args.file, actor, cli_consumer())
    if args.command == "operators":
        return operators(services, args, actor)
    if args.command == "status":
        print(json.dumps(lookup(services, args.issuer, args.serial), indent=2, ensure_ascii=False))
        return 0
    if args.command in ("hold", "release", "revoke"):
        result = manual_action(services, actor, args.issuer, args.serial, args.command, args.comment,
                               getattr(args, "reason", None))
        print(f"{result['message']} Status: {result['status']}. Recorded as {result['event_id']}.")
        return 0
    if args.command == "stream":
        print(json.dumps(services.stream.health(), indent=2))
        return 0
    published = services.crl.rebuild_all()
    print(f"Published {len(published)} CRL shards.")
    return 0


def cli_consumer() -> str:
    # One stable consumer per user and host: consumers stay listed in the group, so a name per process would
    # pile up; entries a killed run left pending are reclaimed by any consumer after 30 s (storage/stream.py).
    return f"cli-{getpass.getuser()}@{socket.gethostname()}"


def worker(services, roles: tuple[str, ...]) -> int:
    logs.use_json_logs()  # the JSON formatter keeps only safe fields and exception types, never values
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    doing = {("events", "crl"): "applying events and publishing CRLs", ("events",): "applying events",
             ("crl",): "publishing CRLs"}[roles]
    print(f"worker: {doing}; SIGTERM or Ctrl-C stops it", file=sys.stderr, flush=True)
    run_worker(services, stop, roles=roles)
    print("worker: stopped", file=sys.stderr, flush=True)
    return 0


def operators(services, args, actor: str) -> int:
    if args.action == "add":
        token = services.operators.add(args.name)
        services.audit.record(actor, "operator_added", {"operator": args.name})
        print(f"Operator {args.name} added. This is their API token; it is shown only now and cannot be shown "
              "again (only its hash is stored):")
        print(token)
        return 0
    if args.action == "list":
        records = services.operators.list()
        for record in records:
            print(f"{record['name']}  since {record['created_at']}  {'disabled' if record['disabled'] else 'active'}")
        if not records:
            print("No operators yet: add one with `operators add NAME`.")
        return 0
    if not services.operators.disable(args.name):
        raise OperatorError("unknown_operator", "No active operator has that name.")
    services.audit.record(actor, "operator_disabled", {"operator": args.name})
    print(f"Operator {args.name} disabled; their tokens no longer work.")
    return 0

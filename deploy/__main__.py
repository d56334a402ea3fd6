"""`python -m deploy serve idp|revocation [--host 127.0.0.1] [--port N]`: a service on Flask's development server,
built by the composition root exactly as gunicorn builds it (deploy/composition.py). Production uses gunicorn."""

from __future__ import annotations

import argparse
import sys

from deploy.composition import idp_app, revocation_app

APPS = {"idp": (idp_app, 8080), "revocation": (revocation_app, 8081)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description="Start a service for development.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a service on the development server (use gunicorn in production)")
    serve.add_argument("service", choices=sorted(APPS))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: 8080 for idp, 8081 for revocation")
    args = parser.parse_args(argv)
    build, port = APPS[args.service]
    try:
        app = build()
    except ValueError as exc:  # both configurations raise a ValueError that names what to set
        print(f"error (configuration): {exc}", file=sys.stderr)
        return 1
    app.run(host=args.host, port=args.port or port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

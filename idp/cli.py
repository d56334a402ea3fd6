"""`python -m idp`: run the IdP, register relying-party clients, rotate signing keys.

    serve [--host 127.0.0.1 --port 8080]     development server (production: gunicorn 'idp.app:create_app()')
    clients add --name NAME --redirect-uri URI [--redirect-uri URI ...] [--jwks FILE | --jwks-uri URI]
                [--sector-identifier-uri URI] [--post-logout-redirect-uri URI] [--id-token-alg RS256|ES256]
    clients list
    clients remove CLIENT_ID
    keys rotate --alg RS256|ES256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from idp.clients import ClientRegistrationError, ClientRegistry
from idp.config import IdpConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m idp", description="MyKey OpenID Provider")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the development server (use gunicorn in production)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    clients = commands.add_parser("clients", help="relying-party clients").add_subparsers(dest="action",
                                                                                          required=True)
    add = clients.add_parser("add", help="register a client")
    add.add_argument("--name", required=True)
    add.add_argument("--redirect-uri", action="append", required=True, dest="redirect_uris")
    keys = add.add_mutually_exclusive_group()
    keys.add_argument("--jwks", type=Path, help="JWKS file with the client's public keys (private_key_jwt)")
    keys.add_argument("--jwks-uri", help="URL of the client's JWKS (private_key_jwt)")
    add.add_argument("--sector-identifier-uri")
    add.add_argument("--post-logout-redirect-uri", action="append", default=[], dest="post_logout")
    add.add_argument("--id-token-alg", default="RS256", choices=("RS256", "ES256"))
    add.add_argument("--json", action="store_true", help="print the registration as JSON")
    clients.add_parser("list", help="list clients")
    remove = clients.add_parser("remove", help="remove a client")
    remove.add_argument("client_id")

    key_commands = commands.add_parser("keys", help="ID token signing keys").add_subparsers(dest="action",
                                                                                            required=True)
    rotate = key_commands.add_parser("rotate", help="publish a new key; it signs after the overlap")
    rotate.add_argument("--alg", default="RS256", choices=("RS256", "ES256"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = IdpConfig.from_env()
    if args.command == "serve":
        from idp.app import create_app

        create_app(config).run(host=args.host, port=args.port, threaded=True)
        return 0
    from idp.services import connect_redis

    client = connect_redis(config)
    if args.command == "keys":
        from idp.signing_keys import SigningKeys

        key = SigningKeys(client, config).rotate(args.alg)
        print(f"Published {key.alg} key {key.kid}; it starts signing at {key.signs_from:%Y-%m-%d %H:%M:%S} UTC.")
        return 0
    registry = ClientRegistry(client)
    if args.action == "list":
        for c in registry.list():
            print(f"{c.client_id}  {c.name}  auth={c.token_endpoint_auth_method}  sector={c.sector}  "
                  f"redirect={','.join(c.redirect_uris)}")
        return 0
    if args.action == "remove":
        if not registry.remove(args.client_id):
            print(f"error (unknown_client): no client {args.client_id}", file=sys.stderr)
            return 1
        print(f"Removed {args.client_id}.")
        return 0
    try:
        jwks = json.loads(args.jwks.read_text()) if args.jwks else None
        registered, secret = registry.add(args.name, args.redirect_uris, jwks=jwks, jwks_uri=args.jwks_uri,
                                          sector_identifier_uri=args.sector_identifier_uri,
                                          id_token_alg=args.id_token_alg, post_logout_redirect_uris=args.post_logout)
    except ClientRegistrationError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error (invalid_client_metadata): the JWKS file could not be read ({exc.__class__.__name__})",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"client_id": registered.client_id, "client_secret": secret,
                          "token_endpoint_auth_method": registered.token_endpoint_auth_method,
                          "issuer": config.issuer}))
        return 0
    print(f"Registered {registered.name}: client_id {registered.client_id} "
          f"({registered.token_endpoint_auth_method}, sector {registered.sector}).")
    if secret:
        print(f"client_secret {secret}")
        print("The secret is shown only now; store it safely.")
    print(f"Discovery: {config.issuer}/.well-known/openid-configuration")
    return 0

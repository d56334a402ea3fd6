"""`python -m idp`: register relying-party clients, rotate signing keys.

The IdP itself is started by the composition root: `python -m deploy serve idp` in development, gunicorn with
'deploy.composition:idp_app()' in production (deploy/composition.py).

    clients add --name NAME --redirect-uri URI [--redirect-uri URI ...] [--jwks FILE | --jwks-uri URI]
                [--sector-identifier-uri URI] [--post-logout-redirect-uri URI] [--id-token-alg RS256|ES256]
                [--fetch-ca-file PEM] [--backchannel-logout-uri URI] [--profile fapi2] [--require-par] [--dpop]
    clients list
    clients remove CLIENT_ID
    keys rotate --alg RS256|ES256
    records purge-plain
                delete the consents and access logs kept in clear before the access record was sealed
                (mykey/record.py); run once after upgrading
    signals run                         the signals worker: status feeds → SSF streams and back-channel logout

Every command reads the IdP's environment (idp/config.py): the clients and keys commands write to the Redis at
REDIS_URL, so they must run with the same REDIS_URL (and REDIS_CLUSTER) as the IdP, and the discovery URL they
print is IDP_ISSUER's. A failure is one line on stderr, `error (<code>): <sentence>`, and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from idp.config import DEFAULT_ISSUER, IdpConfig
from idp.oidc.clients import ClientRegistrationError, ClientRegistry
from idp.oidc.signing_keys import SigningKeys
from mykey.record import purge_plain_records
from wire.errors import CodedError
from wire.json_input import loads as json_loads
from wire.redis_connect import connect_redis

ENVIRONMENT = f"""environment (the same as the IdP's):
  IDP_ISSUER         the issuer URL the IdP serves; printed as the discovery URL (default {DEFAULT_ISSUER}, development)
  REDIS_URL          the Redis the IdP uses; clients and keys are written there (default redis://127.0.0.1:6390/0)
  REDIS_CLUSTER      1 if REDIS_URL is a Redis Cluster node
  MYKEY_VAR          state directory (default var)
  MYKEY_DEV          1 in development (see idp/config.py for what production requires)
  IDP_FETCH_CA_FILE  PEM bundle of the CAs trusted when fetching a client's sector_identifier_uri (default:
                     the system's CAs)"""


class CommandFailed(CodedError):
    """A command could not run; `code` and the sentence go to stderr as one line."""


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m idp", description="MyKey OpenID Provider", epilog=ENVIRONMENT,
                                     formatter_class=raw)
    commands = parser.add_subparsers(dest="command", required=True)
    clients = commands.add_parser("clients", help="relying-party clients", epilog=ENVIRONMENT,
                                  formatter_class=raw).add_subparsers(dest="action", required=True)
    add = clients.add_parser("add", help="register a client", epilog=ENVIRONMENT, formatter_class=raw)
    add.add_argument("--name", required=True)
    add.add_argument("--redirect-uri", action="append", required=True, dest="redirect_uris")
    keys = add.add_mutually_exclusive_group()
    keys.add_argument("--jwks", type=Path, help="JWKS file with the client's public keys (private_key_jwt)")
    keys.add_argument("--jwks-uri", help="URL of the client's JWKS (private_key_jwt)")
    add.add_argument("--sector-identifier-uri", help="https URL of a JSON array listing every redirect URI; its "
                     "host is then the pairwise sector (fetched now, OIDC Core §8.1)")
    add.add_argument("--fetch-ca-file", default=None,
                     help="PEM bundle of CAs to trust for the sector_identifier_uri (default: $IDP_FETCH_CA_FILE, "
                     "else the system's CAs)")
    add.add_argument("--post-logout-redirect-uri", action="append", default=[], dest="post_logout")
    add.add_argument("--id-token-alg", default="RS256", choices=("RS256", "ES256"))
    add.add_argument("--backchannel-logout-uri", default=None,
                     help="where the IdP POSTs logout tokens (OpenID Connect Back-Channel Logout 1.0)")
    add.add_argument("--profile", choices=("fapi2",), default=None,
                     help="fapi2: hold the client to the FAPI 2.0 Security Profile (PAR, DPoP, private_key_jwt "
                     "with PS256/ES256; see docs/relying-parties.md)")
    add.add_argument("--require-par", action="store_true",
                     help="refuse authorization requests not pushed to the PAR endpoint first (fapi2 implies it)")
    add.add_argument("--dpop", action="store_true",
                     help="refuse token requests without a DPoP proof: sender-constrained tokens (fapi2 implies it)")
    add.add_argument("--json", action="store_true", help="print the registration as JSON")
    clients.add_parser("list", help="list clients")
    remove = clients.add_parser("remove", help="remove a client")
    remove.add_argument("client_id")

    key_commands = commands.add_parser("keys", help="ID token signing keys", epilog=ENVIRONMENT,
                                       formatter_class=raw).add_subparsers(dest="action", required=True)
    rotate = key_commands.add_parser("rotate", help="publish a new key; it signs after the overlap")
    rotate.add_argument("--alg", default="RS256", choices=("RS256", "ES256"))
    records = commands.add_parser("records", help="holders' records", epilog=ENVIRONMENT,
                                  formatter_class=raw).add_subparsers(dest="action", required=True)
    records.add_parser("purge-plain", help="delete consents and access logs kept in clear by earlier versions")

    signals = commands.add_parser("signals", help="signals to relying parties (SSF, back-channel logout)",
                                  epilog=ENVIRONMENT, formatter_class=raw).add_subparsers(dest="action", required=True)
    signals.add_parser("run", help="run the signals worker until SIGTERM or Ctrl-C (idp/signals/worker.py)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = IdpConfig.from_env()
    except ValueError as exc:
        return _fail(CommandFailed("configuration", str(exc)))
    try:
        return _run(args, config)
    except CommandFailed as exc:
        return _fail(exc)
    except redis.RedisError:
        return _fail(CommandFailed("redis_unreachable", f"Cannot use the Redis at {_redacted(config.redis_url)}; "
                                   "start it, or set REDIS_URL (and REDIS_CLUSTER) to the Redis the IdP uses."))


def _run(args, config: IdpConfig) -> int:
    client = connect_redis(config.redis_url, config.redis_cluster)
    if args.command == "records":
        deleted = purge_plain_records(client)
        print(f"Deleted {deleted} plain consent and access-log records; every access record is now sealed.")
        return 0
    if args.command == "signals":
        from idp.signals.worker import run_from_command

        return run_from_command(config, client)
    if args.command == "keys":
        key = SigningKeys(client, config).rotate(args.alg)
        print(f"Published {key.alg} key {key.kid}; it starts signing at {key.signs_from:%Y-%m-%d %H:%M:%S} UTC.")
        return 0
    fetch_ca_file = getattr(args, "fetch_ca_file", None) or config.fetch_ca_file
    try:
        registry = ClientRegistry(client, fetch_ca_file=fetch_ca_file)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise CommandFailed("configuration", f"The CA bundle IDP_FETCH_CA_FILE / --fetch-ca-file "
                            f"({fetch_ca_file}) cannot be read as PEM ({exc.__class__.__name__}).") from None
    if args.action == "list":
        for c in registry.list():
            profile = f"  profile={c.profile}" if c.profile else ""
            print(f"{c.client_id}  {c.name}  auth={c.token_endpoint_auth_method}  sector={c.sector}  "
                  f"redirect={','.join(c.redirect_uris)}{profile}")
        return 0
    if args.action == "remove":
        if not registry.remove(args.client_id):
            raise CommandFailed("unknown_client", f"There is no client {args.client_id}.")
        print(f"Removed {args.client_id}.")
        return 0
    return _add(args, config, registry)


def _add(args, config: IdpConfig, registry: ClientRegistry) -> int:
    try:
        jwks = json_loads(args.jwks.read_bytes()) if args.jwks else None
    except (OSError, ValueError) as exc:
        raise CommandFailed("invalid_client_metadata", f"The JWKS file could not be read as JSON "
                            f"({getattr(exc, 'reason', exc.__class__.__name__)}).") from None
    try:
        registered, secret = registry.add(args.name, args.redirect_uris, jwks=jwks, jwks_uri=args.jwks_uri,
                                          sector_identifier_uri=args.sector_identifier_uri,
                                          id_token_alg=args.id_token_alg, post_logout_redirect_uris=args.post_logout,
                                          backchannel_logout_uri=args.backchannel_logout_uri,
                                          profile=args.profile, require_par=args.require_par, dpop_bound=args.dpop)
    except ClientRegistrationError as exc:
        raise CommandFailed(exc.code, exc.message) from None
    if args.json:
        print(json.dumps({"client_id": registered.client_id, "client_secret": secret,
                          "token_endpoint_auth_method": registered.token_endpoint_auth_method,
                          "profile": registered.profile or None,
                          "require_pushed_authorization_requests": registered.require_pushed_authorization_requests,
                          "dpop_bound_access_tokens": registered.dpop_bound_access_tokens,
                          "issuer": config.issuer}))
        return 0
    print(f"Registered {registered.name}: client_id {registered.client_id} "
          f"({registered.token_endpoint_auth_method}, sector {registered.sector}).")
    if registered.profile or registered.require_pushed_authorization_requests or registered.dpop_bound_access_tokens:
        print(f"Profile {registered.profile or 'none'}: PAR required {registered.require_pushed_authorization_requests}"
              f", DPoP required {registered.dpop_bound_access_tokens}.")
    if secret:
        print(f"client_secret {secret}")
        print("The secret is shown only now; store it safely.")
    print(f"Discovery: {config.issuer}/.well-known/openid-configuration")
    if "IDP_ISSUER" not in os.environ:
        print("IDP_ISSUER is not set, so that is the development default; give relying parties the issuer your "
              "IdP serves.")
    return 0


def _fail(error: CommandFailed) -> int:
    print(f"error ({error.code}): {error.message}", file=sys.stderr)
    return 1


def _redacted(url: str) -> str:
    """The Redis URL without its password (it may carry one: redis://:password@host)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))

"""What each cause sends to whom: the one mapping from the platform's internal reasons to what relying parties see.

| cause (inside the platform)                        | SSF stream (CAEP)                         | back-channel logout |
|----------------------------------------------------|-------------------------------------------|---------------------|
| certificate held (card reported lost, suspended…)  | session-revoked                           | logout token (sub)  |
| certificate revoked (any reason but a renewal)     | session-revoked, credential-change revoke | logout token (sub)  |
| certificate revoked as a renewal replaced it       | session-revoked                           | logout token (sub)  |
| certificate registered as a renewal                | credential-change update                  | —                   |
| hold released                                      | —                                         | —                   |
| holder withdraws one relying party's consent       | session-revoked (to that one)             | logout token (sub)  |
| holder logs out everywhere (account page)          | session-revoked                           | logout token (sub)  |
| holder logs out of one IdP session (RP-initiated   | —                                         | logout token (sub,  |
| logout, or the account page's link)                |                                           | sid)                |

Every cause about the card says `initiating_entity: policy`, the holder's own actions `user`. The internal reason
(the CRL reason code, the resident-register event: death, move abroad, court order, loss…) picks a row and goes
no further: no token carries it, in any member.

Who receives: for a cause about an account, each relying party that has an SSF stream or a back-channel logout
URI, *and* that the holder consented to — a keyed lookup per relying party (`ConsentStore.get_many(account_id,
client_ids)`: `get` for each, pipelined in one round trip), never a listing of the holder's consents. Each gets
its own pairwise `sub`, and nothing else about the holder. A certificate that no account uses (its card never
logged in) signals nobody.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from idp.oidc.clients import Client
from idp.signals import tokens
from idp.signals.config import SignalsConfig
from idp.signals.outbox import Outboxes
from idp.signals.streams import Stream, StreamStore
from mykey.pairwise import pairwise_subject
from wire import status_feed

SUPERSEDED = 4  # RFC 5280 CRLReason superseded: the revocation a renewal makes
RECEIVERS_CACHE_SECONDS = 2.0
SHORT = {tokens.SESSION_REVOKED: "session-revoked", tokens.CREDENTIAL_CHANGE: "credential-change",
         tokens.VERIFICATION: "verification", tokens.BACKCHANNEL_LOGOUT: "backchannel-logout"}


@dataclass(frozen=True)
class Cause:
    """One thing that happened to an account, as the mapping above reads it."""

    cause_id: str  # stable across a redelivery: the feed entry, or the request's own id
    at: int  # epoch seconds
    events: tuple[tuple[str, dict], ...]  # CAEP events for SSF streams
    logout: bool  # logout tokens (sub only) to back-channel receivers


def certificate_cause(cause_id: str, at: int, state: str, reason: int | None, renewal: bool) -> Cause | None:
    """The cause a status feed entry is (wire/status_feed.py), or None when it signals nothing."""
    ended = tokens.session_revoked(at, tokens.INITIATED_BY_POLICY)
    if state == status_feed.HELD:
        return Cause(cause_id, at, ((tokens.SESSION_REVOKED, ended),), True)
    if state == status_feed.REVOKED:
        events = [(tokens.SESSION_REVOKED, ended)]
        if reason != SUPERSEDED:
            events.append((tokens.CREDENTIAL_CHANGE, tokens.credential_change(at, tokens.CHANGE_REVOKE)))
        return Cause(cause_id, at, tuple(events), True)
    if state == status_feed.GOOD and renewal:
        return Cause(cause_id, at, ((tokens.CREDENTIAL_CHANGE, tokens.credential_change(at, tokens.CHANGE_UPDATE)),),
                     False)
    return None


def holder_cause(cause_id: str, at: int) -> Cause:
    """The holder ended their sessions at relying parties (consent withdrawn, logged out everywhere)."""
    return Cause(cause_id, at, ((tokens.SESSION_REVOKED, tokens.session_revoked(at, tokens.INITIATED_BY_USER)),),
                 True)


class Signals:
    """Builds and queues the tokens of each cause (module docstring); shared by the worker and the IdP's views."""

    def __init__(self, services, streams: StreamStore, outboxes: Outboxes, config: SignalsConfig):
        self.services = services
        self.streams = streams
        self.outboxes = outboxes
        self.config = config
        self._jti_key = services.config.subkey("signals-jti")
        self._pairwise_key = services.config.subkey("pairwise-sub")
        self._receivers: tuple[float, dict[str, Stream], list[Client]] | None = None
        self._lock = threading.Lock()

    # --- who receives ---------------------------------------------------------------------------------------

    def receivers(self) -> tuple[dict[str, Stream], dict[str, Client]]:
        """Streams by client id, and every client that has a stream or a back-channel logout URI (cached
        briefly: a bounded list of relying parties, read per cause would cost a round trip each)."""
        now = time.monotonic()
        cached = self._receivers
        if cached is None or now - cached[0] > RECEIVERS_CACHE_SECONDS:
            streams = self.streams.all()
            clients = [c for c in self.services.clients.list()
                       if c.client_id in streams or c.backchannel_logout_uri]
            cached = self._receivers = (now, streams, clients)
        return cached[1], {c.client_id: c for c in cached[2]}

    def forget_receivers(self) -> None:
        self._receivers = None

    def sub_for(self, client: Client, account_id: str) -> str:
        return pairwise_subject(self._pairwise_key, client.sector, account_id)

    # --- queuing --------------------------------------------------------------------------------------------

    def for_account(self, account_id: str, cause: Cause, only: str | None = None, consented: bool = False) -> int:
        """Queue `cause` for every receiver the holder consented to (or only `only`; `consented`: the caller
        already knows it was). Returns how many tokens were queued."""
        streams, clients = self.receivers()
        if only is not None:
            clients = {only: clients[only]} if only in clients else {}
        if not consented:  # the keyed lookup per relying party, all of them in one round trip
            allowed = {c.client_id for c in self.services.consents.get_many(account_id, sorted(clients))}
            clients = {client_id: client for client_id, client in clients.items() if client_id in allowed}
        queued = []
        for client_id, client in clients.items():
            sub = self.sub_for(client, account_id)
            stream = streams.get(client_id)
            if stream is not None:
                for event_type, event in cause.events:
                    if stream.wants(event_type):
                        queued.append(self._set(stream, sub, cause, event_type, event))
            if cause.logout and client.backchannel_logout_uri:
                queued.append(self._logout(client, sub, cause, None))
        self.outboxes.put(queued)
        return len(queued)

    def session_logout(self, account_id: str, session_digest: str, client_ids: list[str], cause_id: str) -> int:
        """Logout tokens with `sid` for the receivers one IdP session logged into (consent not needed: the
        holder logged in there through this very session)."""
        _, clients = self.receivers()
        cause = Cause(cause_id, int(time.time()), (), True)
        queued = [self._logout(clients[c], self.sub_for(clients[c], account_id), cause,
                               session_sid(self._sid_key(), session_digest, c))
                  for c in client_ids if c in clients and clients[c].backchannel_logout_uri]
        self.outboxes.put(queued)
        return len(queued)

    def verification(self, stream: Stream, state: str | None) -> None:
        """SSF §8.1.4: a verification event on the stream, whatever its events_requested, subject the stream."""
        event = {"state": state} if state is not None else {}
        cause = Cause(f"verify:{time.time_ns()}", int(time.time()), (), False)
        subject = {"format": "opaque", "id": stream.stream_id}
        self.outboxes.put([self._set(stream, None, cause, tokens.VERIFICATION, event, subject)])

    def _sid_key(self) -> bytes:
        return self.services.config.subkey("bcl-sid")

    def _signer(self, alg: str | None = None):
        """(key set, kid, alg) of the current signing key of `alg` (SETs: SIGNALS_SET_ALG)."""
        alg = alg or self.config.set_alg
        key = self.services.signing_keys.current(alg)
        return self.services.signing_keys.key_set(alg), key.kid, alg

    def _set(self, stream: Stream, sub: str | None, cause: Cause, event_type: str, event: dict,
             subject: dict | None = None) -> tuple[str, str, str, str]:
        key, kid, alg = self._signer()
        issuer = self.services.config.issuer
        jti = tokens.derived_jti(self._jti_key, cause.cause_id, stream.client_id, event_type)
        token = tokens.security_event_token(key, kid, alg, issuer, stream.client_id, jti, int(time.time()),
                                            subject or tokens.iss_sub(issuer, sub), event_type, event)
        return f"ssf:{stream.client_id}", jti, SHORT[event_type], token

    def _logout(self, client: Client, sub: str, cause: Cause, sid: str | None) -> tuple[str, str, str, str]:
        # Signed like the client's ID tokens: it verifies a logout token as it verifies an ID token.
        key, kid, alg = self._signer(client.id_token_signed_response_alg)
        jti = tokens.derived_jti(self._jti_key, cause.cause_id, client.client_id, "logout", sid or "")
        token = tokens.logout_token(key, kid, alg, self.services.config.issuer, client.client_id, jti,
                                    int(time.time()), sub, sid)
        return f"bcl:{client.client_id}", jti, SHORT[tokens.BACKCHANNEL_LOGOUT], token


def session_sid(key: bytes, session_digest: str, client_id: str) -> str:
    """The `sid` one relying party sees for one IdP session: pairwise like `sub`, so two relying parties cannot
    link a holder through the session they share."""
    return tokens.derived_jti(key, "sid", session_digest, client_id)

"""Signals to relying parties: the IdP as an OpenID Shared Signals Framework 1.0 transmitter (CAEP 1.0 events in
Security Event Tokens, RFC 8417, pushed per RFC 8935 or polled per RFC 8936) and as an OpenID Connect Back-Channel
Logout 1.0 provider.

The path of one signal, each step durable, so a crash anywhere loses nothing (at least once):
1. the revocation service writes a certificate's status change to its shard's status feed, in the same step as
   the CRL index (wire/status_feed.py);
2. a signals worker (`python -m idp signals run`, worker.py) reads the feeds with a consumer group, finds the
   account behind the serial, and for every relying party that has a stream or a back-channel logout URI *and*
   that the holder consented to, queues the signed tokens in that receiver's outbox (causes.py); only then does it
   acknowledge the feed entry;
3. the worker pushes each outbox in order (delivery.py), deleting an entry once the receiver accepted it, retrying
   with exponential backoff, dead-lettering after a bounded number of tries; a poll receiver reads its outbox
   itself (endpoints.py).
The holder's own actions (withdrawing a consent, logging out, logging out everywhere) queue in step 2's way,
from the request that made them.
"""

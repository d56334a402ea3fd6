"""gunicorn settings for the revocation service: `gunicorn -c deploy/gunicorn-revocation.conf.py
'deploy.composition:revocation_app()'`.

Threaded workers with keep-alive: an OCSP answer is short work around a Redis round trip, so a thread waiting on
Redis lets another request run, and a kept-alive connection spares a TCP handshake per request (bench/: about
+20 % OCSP requests/s over sync workers). In production OCSP is routed to its own data plane under granian
(deploy/granian-ocsp.sh, about twice the requests/s at a third of the CPU per request, bench/report.md); this app
keeps answering /ocsp for development and small deployments. The app keeps no per-request state outside Flask's
request context, and what it shares (redis-py's pools, the live-signing semaphore) is thread-safe.

Access log: `--access-logfile FILE` (or `-` for stderr). Its lines go through the same redaction as every log line
(observability/logs.py, installed when the app is created): login handles, serials, OCSP requests and query strings
are cut. Every variable the service reads is in docs/configuration.md; outside development (no MYKEY_DEV=1) the
service refuses to start without its production settings.
"""

worker_class = "gthread"
workers = 2  # per machine; `-w N` overrides (one or two per core)
threads = 4
keepalive = 5  # seconds an idle kept-alive connection stays open

#!/bin/sh
# The OCSP data plane in production: deploy.composition:ocsp_app (POST /ocsp, GET /ocsp/<request>, /healthz; a
# bare WSGI callable, no Flask) under granian. Settings live here, as deploy/gunicorn-*.conf.py hold gunicorn's:
#
#     deploy/granian-ocsp.sh --host 127.0.0.1 --port 8083      # anything given is passed on to granian
#     PYTHON=.venv/bin/python OCSP_WORKERS=4 deploy/granian-ocsp.sh --port 8083
#
# GRANIAN_APP names another WSGI factory to run on exactly these settings; only bench/limits.py uses it, to measure
# a trivial fixed response on the same server stack.
#
# Why these (measured with bench/ocsp.py and bench/limits.py on 2 cores; bench/report.md):
# - WSGI interface, one process per core (OCSP_WORKERS, default 2): an answer is a dictionary lookup in process or
#   one signature, all CPU under the GIL, so processes scale and more threads per process do not.
# - One blocking thread per worker: a held answer is pure CPU under the GIL, and a second thread only adds
#   hand-offs (steady state, nonce-less GETs: 57-74 us of CPU per request with 1 thread, 90-95 us with 2). The
#   price is paid on a cold cache, where each miss waits for two Redis round trips: 2 threads filled it about
#   twice as fast. Most answers are held, so 1 it is.
# - HTTP/1.1 only, no WebSockets: what OCSP clients speak (RFC 6960 Appendix A); keep-alive stays on.
# - Access log off: a GET's path is the OCSP request itself (the serial), and granian's access log does not pass
#   through the platform's redaction (observability/logs.py). Put the access log on the proxy in front, redacted,
#   or not at all (docs/operators.md). Granian's own log at warning.
# - Every variable the service reads is in docs/configuration.md; outside development (no MYKEY_DEV=1) the app
#   refuses to start without its production settings, and granian exits with the reason on stderr.
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m granian --interface wsgi --factory \
    --workers "${OCSP_WORKERS:-2}" --blocking-threads 1 --runtime-threads 1 \
    --http 1 --no-ws --no-access-log --log-level warning \
    "$@" "${GRANIAN_APP:-deploy.composition:ocsp_app}"

"""gunicorn settings for the IdP: `gunicorn -c deploy/gunicorn-idp.conf.py
'deploy.composition:idp_app()'`.

Sync workers: the IdP's requests are CPU-bound (RSA and ECDSA signatures, JWT checks, certificate parsing), and
threads competing for the GIL cost more than they save — bench/ measured threaded workers at about 35-45 % fewer
logins and token exchanges per second on the same cores. Scale with processes instead.

Access log: `--access-logfile FILE` (or `-` for stderr). Its lines go through the same redaction as every log line
(observability/logs.py, installed when the app is created): login handles, serials, OCSP requests and query strings
are cut. Every variable the service reads is in docs/configuration.md; outside development (no MYKEY_DEV=1) the
service refuses to start without its production settings.
"""

worker_class = "sync"
workers = 2  # per machine; `-w N` overrides (one per core)

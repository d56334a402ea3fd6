"""gunicorn settings for the IdP: `gunicorn -c deploy/gunicorn-idp.conf.py 'idp.app:create_app()'`.

Sync workers: the IdP's requests are CPU-bound (RSA and ECDSA signatures, JWT checks, certificate parsing), and
threads competing for the GIL cost more than they save — bench/ measured threaded workers at about 35-45 % fewer
logins and token exchanges per second on the same cores. Scale with processes instead.
"""

worker_class = "sync"
workers = 2  # per machine; `-w N` overrides (one per core)

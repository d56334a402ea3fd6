"""gunicorn settings for both services. gunicorn reads ./gunicorn.conf.py by default, so running it from the
repository (`gunicorn -w 2 'revocation.app:create_app()'`) uses these; elsewhere pass `-c path/gunicorn.conf.py`.

Threaded workers: a thread waiting on Redis or on the revocation service (the IdP's OCSP check) lets another
request run, and kept-alive connections spare a TCP handshake per OCSP request. The apps keep no per-request
state outside Flask's request context, and every shared object they hold (redis-py's pools, the OCSP signing
semaphore, caches of immutable keys) is thread-safe. bench/ measures both services this way.
"""

worker_class = "gthread"
workers = 2  # per machine; `-w N` overrides (one or two per core)
threads = 4
keepalive = 5  # seconds an idle kept-alive connection stays open

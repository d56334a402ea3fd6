"""Serve a WSGI app on a loopback port from a thread (werkzeug's threaded server): for `make run` and tests.

Production runs the same apps under gunicorn (docs/operators.md); this is the development server.
"""

from __future__ import annotations

import threading

from werkzeug.serving import make_server


class LiveServer:
    """`with LiveServer(app, port) as live: live.url` — serving on enter, shut down on exit."""

    def __init__(self, app, port: int = 0, host: str = "127.0.0.1"):
        self.server = make_server(host, port, app, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)

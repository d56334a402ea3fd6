"""OCSP (RFC 6960): the responder that answers from certificate status (responder.py), the pre-signed answers each
process holds coherent with Redis (held.py), nonce answers re-signed from them (der.py), and the HTTP endpoint with
the data plane's WSGI app (wsgi.py)."""

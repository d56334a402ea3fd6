"""CRLs (RFC 5280 §5): the sharded full and delta publisher, the DER encoder, and the HTTP endpoint."""

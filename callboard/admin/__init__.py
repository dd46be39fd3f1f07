"""The daemon's admin API: authenticated JSON over HTTP(S), on the standard library.

``AdminServer(system, tokens, audit, host, port, ...)`` serves it; ``load_tokens(settings)``
gives the tokens it accepts. The endpoints, roles and audit format: docs/admin-api.md.
"""

from callboard.admin._server import MAX_BODY_BYTES, AdminServer
from callboard.admin._tokens import GENERATED_TOKEN_FILE, GENERATED_TOKEN_ID, load_tokens

__all__ = [
    "GENERATED_TOKEN_FILE",
    "GENERATED_TOKEN_ID",
    "MAX_BODY_BYTES",
    "AdminServer",
    "load_tokens",
]

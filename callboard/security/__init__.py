"""Security: admin tokens and roles, the audit log."""

from callboard.security._audit import AuditLog
from callboard.security._roles import ACTIONS, ROLES, Role, allowed
from callboard.security._tokens import Token, TokenStore, new_secret, read_secret, write_secret

__all__ = [
    "ACTIONS",
    "ROLES",
    "AuditLog",
    "Role",
    "Token",
    "TokenStore",
    "allowed",
    "new_secret",
    "read_secret",
    "write_secret",
]

"""The error hierarchy; one handler (``install_error_handlers``) maps it to the JSON shape.

::

    ChatSessionsError (500 internal)
     ├── InvalidParameter   400 invalid_parameter
     ├── Unauthorized       401 unauthorized
     ├── NotFound           404 not_found
     ├── MethodNotAllowed   405 method_not_allowed
     ├── Conflict           409 conflict
     ├── PayloadTooLarge    413 payload_too_large
     ├── RateLimited        429 rate_limited (Retry-After)
     └── Unavailable        503 unavailable

Every body is ``{"success": false, "error": "...", "code": "..."}`` (+ ``extra`` fields).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ChatSessionsError",
    "Conflict",
    "InvalidParameter",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
]


class ChatSessionsError(Exception):
    """Base of every error the API reports; carries status, code and a safe message."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str = "internal error", **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"success": False, "error": self.message, "code": self.code, **self.extra}


class InvalidParameter(ChatSessionsError):
    """A parameter or body field is missing or wrong; the message names it."""

    status_code = 400
    code = "invalid_parameter"

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}", parameter=parameter)
        self.parameter = parameter


class Unauthorized(ChatSessionsError):
    """No valid credentials. The text is the same for every cause."""

    status_code = 401
    code = "unauthorized"

    def __init__(self) -> None:
        super().__init__("invalid or missing API key")


class NotFound(ChatSessionsError):
    """The thing does not exist for this caller (other tenants' things included)."""

    status_code = 404
    code = "not_found"


class MethodNotAllowed(ChatSessionsError):
    """The path exists but not with this method."""

    status_code = 405
    code = "method_not_allowed"


class Conflict(ChatSessionsError):
    """A unique value is already taken (e.g. a contact's phone number)."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(ChatSessionsError):
    """The request body is over the limit."""

    status_code = 413
    code = "payload_too_large"


class RateLimited(ChatSessionsError):
    """Too many requests; ``Retry-After`` says when to come back."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: int, message: str = "too many requests") -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, retry_after))}


class Unavailable(ChatSessionsError):
    """The database cannot be reached right now."""

    status_code = 503
    code = "unavailable"

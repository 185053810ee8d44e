"""Typed errors.

Every error the SDK raises is a `MicrosandboxError`, which is a `RuntimeError`
so that code written for upstream's SDK (which raised bare RuntimeErrors)
still catches it.  The subclass says what went wrong; `message` is the
server's own text, `status` the HTTP status, `code` the server's error code
(upstream's 1001/1004/2001/5002 or a JSON-RPC code) and `kind` this
project's error kind (docs/errors.md) when the server sent one.
"""

from typing import Any, Optional

__all__ = [
    "MicrosandboxError",
    "ServerUnreachable",
    "AuthError",
    "InvalidRequest",
    "NotFound",
    "SandboxNotFound",
    "FileNotFound",
    "StateError",
    "NotStarted",
    "Timeout",
    "NetworkError",
    "GuestError",
    "ServerError",
    "MethodNotFound",
    "ProtocolError",
]


class MicrosandboxError(RuntimeError):
    """Base class: `str(e)` reads "<what the SDK was doing>: <server message>"."""

    def __init__(
        self,
        message: str,
        *,
        context: Optional[str] = None,
        status: Optional[int] = None,
        code: Optional[int] = None,
        kind: Optional[str] = None,
        data: Any = None,
    ) -> None:
        self.message = message
        self.context = context
        self.status = status
        self.code = code
        self.kind = kind
        self.data = data
        super().__init__(f"{context}: {message}" if context else message)


class ServerUnreachable(MicrosandboxError, ConnectionError):
    """The server could not be reached (refused, reset, DNS, connect timeout)."""


class AuthError(MicrosandboxError):
    """401: no API key, a malformed one, a bad signature or an expired key."""


class InvalidRequest(MicrosandboxError):
    """The server refused the parameters (HTTP 400/413/415/422, -32602)."""


class NotFound(MicrosandboxError):
    """Something named does not exist (-32001)."""


class SandboxNotFound(NotFound):
    """The named sandbox does not exist."""


class FileNotFound(NotFound):
    """The named file does not exist in the sandbox."""


class StateError(MicrosandboxError):
    """Wrong state: already exists, not running, busy (-32002)."""


class NotStarted(StateError):
    """A method that needs a started sandbox was called before start()."""


class Timeout(MicrosandboxError, TimeoutError):
    """A deadline passed, on the server (kind timeout) or in the client."""


class NetworkError(MicrosandboxError):
    """The server could not reach something it needed (a registry, -32004)."""


class GuestError(MicrosandboxError):
    """The guest misbehaved or reported a failure (-32005)."""


class ServerError(MicrosandboxError):
    """Any other server-side failure (HTTP 5xx, -32603, upstream's 5002)."""


class MethodNotFound(ServerError):
    """The server does not know the method (an older server)."""


class ProtocolError(MicrosandboxError):
    """The server's reply could not be understood."""


_RPC_CODES: "dict[int, type[MicrosandboxError]]" = {
    -32600: InvalidRequest,
    -32601: MethodNotFound,
    -32602: InvalidRequest,
    -32001: NotFound,
    -32002: StateError,
    -32003: Timeout,
    -32004: NetworkError,
    -32005: GuestError,
    -32006: ServerError,
    -32603: ServerError,
}


# this project's error kinds (docs/errors.md)
_KINDS: "dict[str, type[MicrosandboxError]]" = {
    "usage": InvalidRequest,
    "not_found": NotFound,
    "exists": StateError,
    "state": StateError,
    "timeout": Timeout,
    "network": NetworkError,
    "guest": GuestError,
}


def _refine_not_found(
    cls: "type[MicrosandboxError]", message: str, files: bool
) -> "type[MicrosandboxError]":
    if cls is not NotFound:
        return cls
    low = message.lower()
    if files and "sandbox" not in low:
        return FileNotFound
    return SandboxNotFound


def from_response(
    status: int, body: bytes, context: Optional[str] = None, files: bool = False
) -> MicrosandboxError:
    """Turn a non-success reply (any of the server's error body shapes,
    docs/api.md) into the matching typed error."""
    import json

    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    cls: "type[MicrosandboxError]" = ServerError
    message = text or f"HTTP {status}"
    code = None
    kind = None
    data = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        message = str(err.get("message", message))
        code = err.get("code")
        data = err.get("data")
        if isinstance(data, dict):
            kind = data.get("kind")
        cls = _RPC_CODES.get(code, ServerError) if isinstance(code, int) else ServerError
    elif isinstance(doc, dict) and isinstance(doc.get("error"), str):
        # upstream's handler errors: {"error": msg, "code": 1001|1004|2001|5002}
        message = doc["error"]
        code = doc.get("code")
        kind = doc.get("kind") if isinstance(doc.get("kind"), str) else None
        if status == 401 or code in (1001, 1004):
            cls = AuthError
        elif code == 2001 or status == 400:
            cls = InvalidRequest
        elif kind is not None:
            cls = _KINDS.get(kind, ServerError)
        else:
            # Upstream's bodies carry no kind: the message is all there is.
            low = message.lower()
            if "not found" in low:
                cls = NotFound
            elif "timed out" in low or "timeout" in low:
                cls = Timeout
            else:
                cls = ServerError
    elif status == 401:
        cls = AuthError
    elif status in (400, 413, 415, 422):
        cls = InvalidRequest
    elif status == 404:
        cls = MethodNotFound
    if status == 401:
        cls = AuthError
    cls = _refine_not_found(cls, message, files)
    return cls(message, context=context, status=status, code=code, kind=kind, data=data)

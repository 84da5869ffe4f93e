"""Which failed MLLM calls are worth retrying, and when.

Every provider SDK raises its own exception classes; :func:`classify` sorts them without importing
any SDK: an HTTP status (429, 408/409/425 and 5xx are transient; Retry-After or retry-after-ms is
read from the response), or a network failure recognised by class name (timeouts, connection
errors), is transient; anything else (400/401/403/404, a response that does not parse) is not.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

__all__ = ["CallFailed", "classify", "http_status", "retry_after_seconds"]

TRANSIENT_STATUS = (408, 409, 425, 429)
# Exception class names (anywhere in the MRO) that mean the network, not the request, failed.
TRANSIENT_NAMES = frozenset({
    "TimeoutError", "TimeoutException", "APITimeoutError", "APIConnectionError", "ConnectError",
    "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "ReadError", "WriteError",
    "RemoteProtocolError", "NetworkError", "TransportError", "ConnectionError",
    "ClientConnectionError", "ServerDisconnectedError", "ServerTimeoutError",
})


class CallFailed(Exception):
    """One call failed; ``transient`` ones are retried, after ``retry_after`` seconds if given."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message, self.transient, self.retry_after = message, transient, retry_after


def http_status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def retry_after_seconds(exc: BaseException) -> float | None:
    """Retry-After (seconds or an HTTP date) or retry-after-ms of the error's response."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            import datetime as dt

            when = parsedate_to_datetime(value)
            return max(0.0, (when - dt.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError, AttributeError):
        return None


def classify(exc: BaseException) -> CallFailed:
    """A provider exception as a :class:`CallFailed`: transient (retried) or not."""
    if isinstance(exc, CallFailed):
        return exc
    status = http_status(exc)
    text = " ".join(str(exc).split())[:300]
    if status is not None:
        transient = status in TRANSIENT_STATUS or status >= 500
        return CallFailed(f"HTTP {status}: {text}", transient=transient,
                          retry_after=retry_after_seconds(exc) if transient else None)
    names = {c.__name__ for c in type(exc).__mro__}
    if names & TRANSIENT_NAMES:
        return CallFailed(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, transient=True)
    return CallFailed(f"malformed response or client error ({type(exc).__name__}: {text})", transient=False)

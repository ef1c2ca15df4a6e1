"""Which request headers a run keeps as ``triggerHeaders()``: all but credentials and
hop-by-hop headers (a run's headers are stored and shown; a secret must never be)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

_DROPPED = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-functions-key",
        "x-api-key",
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
    }
)
_DROPPED_PREFIXES = ("x-ms-client-principal", "x-ms-token-")


def trigger_headers(
    headers: Mapping[str, str], extra_dropped: Iterable[str] = ()
) -> dict[str, str]:
    """The headers to store with a run, names as sent (lookups in expressions ignore case)."""
    dropped = _DROPPED | {name.lower() for name in extra_dropped}
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in dropped or lower.startswith(_DROPPED_PREFIXES):
            continue
        kept[name] = value
    return kept

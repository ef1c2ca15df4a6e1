"""Shared access signatures (``SharedAccessSignature sr=...&sig=...&se=...&skn=...``) as Service
Bus checks them: on the management API (the ``Authorization`` header) and on AMQP (the token of a
``$cbs`` ``put-token`` request).

A token is accepted when it is well formed and unexpired, its signature is the HMAC-SHA256 of
``sr + "\\n" + se`` under the named key, and, where an audience is checked, its resource ``sr``
covers what is accessed: the same host (and port), and a path that is the accessed path or one
of its parents (``sb://ns/`` covers every entity, ``sb://ns/orders`` covers ``orders`` and its
subscriptions). Scheme and case are ignored, as Service Bus does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

_PREFIX = "SharedAccessSignature"


@dataclass(frozen=True)
class SasToken:
    """The fields of a shared access signature (``sr`` and ``sig`` as sent, URL-encoded)."""

    resource: str
    signature: str
    expiry: int
    key_name: str

    @property
    def resource_uri(self) -> str:
        """``sr`` decoded (``sb://host:port/path``)."""
        return urllib.parse.unquote_plus(self.resource)


def parse_sas_token(text: str | None) -> SasToken | str:
    """The token in ``text`` (an ``Authorization`` header or a ``put-token`` body), or the reason
    it is not one."""
    if not text:
        return "missing shared access signature"
    scheme, _, token = text.strip().partition(" ")
    if scheme != _PREFIX or not token:
        return "the token must be a SharedAccessSignature"
    fields: dict[str, str] = {}
    for part in token.split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            return f"malformed SharedAccessSignature field {part!r}"
        fields[name] = value
    missing = [name for name in ("sr", "sig", "se", "skn") if not fields.get(name)]
    if missing:
        return f"SharedAccessSignature lacks {', '.join(missing)}"
    try:
        expiry = int(fields["se"])
    except ValueError:
        return "SharedAccessSignature se must be a Unix time"
    return SasToken(
        resource=fields["sr"],
        signature=fields["sig"],
        expiry=expiry,
        key_name=urllib.parse.unquote_plus(fields["skn"]),
    )


def split_resource(uri: str) -> tuple[str, str]:
    """``("host:port", "path")`` of a resource URI, lower-cased, the scheme dropped
    (``sb://NS:5671/Orders/`` -> ``("ns:5671", "orders")``)."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    host, _, path = rest.partition("/")
    return host.casefold(), path.strip("/").casefold()


def path_covers(granted: str, accessed: str) -> bool:
    """Whether a token for path ``granted`` allows ``accessed`` (itself or below it)."""
    granted, accessed = granted.strip("/").casefold(), accessed.strip("/").casefold()
    return not granted or accessed == granted or accessed.startswith(granted + "/")


def check_sas_token(
    text: str | None,
    keys: Mapping[str, str] | None = None,
    *,
    audience: str | None = None,
    now: float | None = None,
) -> str | None:
    """Why the shared access signature ``text`` is rejected, or ``None`` when it is accepted.

    Args:
        text: ``SharedAccessSignature sr=..&sig=..&se=..&skn=..``.
        keys: key name -> key; when given, the signature is checked.
        audience: the resource accessed (``sb://host:port/entity`` or ``https://host:port/...``);
            when given, the token's ``sr`` must cover it.
        now: the current Unix time (tests).
    """
    token = parse_sas_token(text)
    if isinstance(token, str):
        return token
    if token.expiry < (time.time() if now is None else now):
        return "the SharedAccessSignature token has expired"
    if keys is not None:
        key = keys.get(token.key_name)
        if key is None:
            return f"unknown SharedAccessKeyName {token.key_name!r}"
        to_sign = f"{token.resource}\n{token.expiry}".encode()
        expected = base64.b64encode(hmac.new(key.encode(), to_sign, hashlib.sha256).digest())
        given = urllib.parse.unquote_plus(token.signature).encode()
        if not hmac.compare_digest(expected, given):
            return "the SharedAccessSignature signature does not match the key"
    if audience is not None:
        granted_host, granted_path = split_resource(token.resource_uri)
        wanted_host, wanted_path = split_resource(audience)
        if granted_host != wanted_host or not path_covers(granted_path, wanted_path):
            return (
                f"the SharedAccessSignature is for {token.resource_uri!r}, which does not cover "
                f"{audience!r}"
            )
    return None

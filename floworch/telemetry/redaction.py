"""Masks secrets in text that leaves the process (log lines, exported log records).

Connection strings (``SharedAccessKey=``, ``AccountKey=``, ``Password=``), SAS signatures and
the password of a URL (``postgresql://user:secret@host``) are replaced by ``***``.
"""

from __future__ import annotations

import re

MASK = "***"

_KEY_VALUE = re.compile(
    r"(?i)\b(SharedAccessKey|SharedAccessSignature|AccountKey|Password|Pwd|sig|"
    r"client_secret|access_token)=([^;&\s'\"]+)"
)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s'\"]*):([^@/\s'\"]+)@")
_BEARER = re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str) -> str:
    """``text`` with every secret it holds masked."""
    if "=" not in text and "@" not in text and "earer" not in text:
        return text  # the common case: nothing that could hold a secret
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)

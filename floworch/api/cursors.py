"""Opaque page cursors for the run list: base64url of ``[createdAt, runId]``."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from floworch.api.problems import ProblemError
from floworch.storage.api_records import RunCursor


def encode_cursor(cursor: RunCursor | None) -> str | None:
    """The cursor as a URL-safe string (None stays None)."""
    if cursor is None:
        return None
    raw = json.dumps([cursor.created_at.isoformat(), cursor.run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> RunCursor | None:
    """Parses a cursor from :func:`encode_cursor`.

    Raises:
        ProblemError: 400 for anything else.
    """
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created, run_id = json.loads(raw)
        at = datetime.fromisoformat(created)
        if not isinstance(run_id, str) or at.tzinfo is None:
            raise ValueError("bad cursor fields")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ProblemError(
            400, "the cursor is not one this API returned; start again without ?cursor="
        ) from exc
    return RunCursor(at, run_id)

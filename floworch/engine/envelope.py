"""The step envelope: what a step message carries between processes.

Large data (trigger body, outputs) stays in the store; the envelope only names the step and its
dispatch. ``seq`` is the step's dispatch number, so a message id ``<runId>:<stepKey>:<seq>`` is
unique per dispatch and a duplicate or stale message is recognised by the claim.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from floworch.errors import EnvelopeError

ENVELOPE_VERSION = 1


@dataclass(frozen=True)
class StepEnvelope:
    """One dispatch of one step of one run."""

    flow_id: str
    run_id: str
    step_key: str
    step_type: str
    seq: int
    flow_version: str = ""
    scheduled_at: datetime | None = None
    trace_context: Mapping[str, str] = field(default_factory=dict)

    @property
    def message_id(self) -> str:
        """``<runId>:<stepKey>:<seq>``: the same for every re-send of this dispatch."""
        return f"{self.run_id}:{self.step_key}:{self.seq}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of a step message."""
        body: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "flowId": self.flow_id,
            "flowVersion": self.flow_version,
            "runId": self.run_id,
            "stepKey": self.step_key,
            "stepType": self.step_type,
            "seq": self.seq,
        }
        if self.scheduled_at is not None:
            body["scheduledAt"] = self.scheduled_at.isoformat()
        if self.trace_context:
            body["traceContext"] = dict(self.trace_context)
        return body

    def to_json(self) -> str:
        """The envelope as compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> StepEnvelope:
        """Parses a message body.

        Raises:
            EnvelopeError: not JSON, not an object, an unknown version or a missing field.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"step message body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise EnvelopeError("step message body must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepEnvelope:
        """Builds an envelope from its JSON object form (see :meth:`from_json`)."""
        version = data.get("v")
        if version != ENVELOPE_VERSION:
            raise EnvelopeError(
                f"unknown step envelope version {version!r} (this floworch reads version "
                f"{ENVELOPE_VERSION}); upgrade the worker or drain old messages"
            )
        missing = [
            name for name in ("flowId", "runId", "stepKey", "stepType", "seq") if name not in data
        ]
        if missing:
            raise EnvelopeError(f"step envelope lacks {', '.join(missing)}")
        seq = data["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise EnvelopeError(f"step envelope seq must be a positive integer, not {seq!r}")
        scheduled = data.get("scheduledAt")
        try:
            scheduled_at = datetime.fromisoformat(scheduled) if scheduled else None
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(f"step envelope scheduledAt {scheduled!r} is not ISO 8601") from exc
        if scheduled_at is not None and scheduled_at.tzinfo is None:
            scheduled_at = scheduled_at.replace(tzinfo=UTC)
        trace = data.get("traceContext") or {}
        if not isinstance(trace, Mapping):
            raise EnvelopeError(
                f"step envelope traceContext must be an object, not {type(trace).__name__}"
            )
        return cls(
            flow_id=str(data["flowId"]),
            run_id=str(data["runId"]),
            step_key=str(data["stepKey"]),
            step_type=str(data["stepType"]),
            seq=seq,
            flow_version=str(data.get("flowVersion", "")),
            scheduled_at=scheduled_at,
            trace_context={str(k): str(v) for k, v in trace.items()},
        )

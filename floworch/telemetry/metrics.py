"""The engine's metrics (``floworch.*``), with low-cardinality dimensions.

A step is named by its manifest path without ForEach indexes (``each.charge``, not
``each.17.charge``), so a loop of 10,000 items is one time series, not 10,000.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics

from floworch.model.instance_key import InstanceKey, InstanceKeyError
from floworch.telemetry.logs import event

runs_log = logging.getLogger("floworch.engine.runs")

FLOW = "floworch.flow_id"
STEP = "floworch.step_key"
STATUS = "floworch.status"
STEP_TYPE = "floworch.step_type"
REASON = "floworch.reason"

_EVENT_COUNTERS = {
    "StepRetryScheduled": "retries",
    "StepRetried": "retries",
    "StepSkipped": "skips",
    "StepPolling": "polls",
}


def step_template(step_key: str) -> str:
    """``each.17.charge`` -> ``each.charge`` (a malformed key is returned as it is)."""
    try:
        return InstanceKey.parse(step_key).template
    except InstanceKeyError:
        return step_key


class EngineMetrics:
    """Counters and histograms the engine, the runtimes and the hosts record into."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter("floworch", meter_provider=meter_provider)
        self.runs_started = meter.create_counter(
            "floworch.runs.started", unit="{run}", description="Runs started, by flow"
        )
        self.runs_finished = meter.create_counter(
            "floworch.runs.finished", unit="{run}", description="Runs finished, by flow and status"
        )
        self.steps_finished = meter.create_counter(
            "floworch.steps.finished",
            unit="{step}",
            description="Step instances finished, by flow, step and status",
        )
        self.step_duration = meter.create_histogram(
            "floworch.step.duration",
            unit="s",
            description="Time to execute one step dispatch (claim to outcome stored)",
        )
        self.queue_delay = meter.create_histogram(
            "floworch.step.queue_delay",
            unit="s",
            description="From the time a dispatch was due to the start of its execution",
        )
        self.retries = meter.create_counter(
            "floworch.steps.retries", unit="{retry}", description="Retries scheduled or requested"
        )
        self.skips = meter.create_counter(
            "floworch.steps.skips", unit="{step}", description="Steps skipped"
        )
        self.polls = meter.create_counter(
            "floworch.steps.polls", unit="{poll}", description="Polls scheduled"
        )
        self.signal_wait = meter.create_histogram(
            "floworch.signal.wait_time",
            unit="s",
            description="From a WaitForSignal step starting to wait to its signal arriving",
        )
        self.cron_lag = meter.create_histogram(
            "floworch.cron.fire_lag",
            unit="s",
            description="From a cron fire time to the start of its run",
        )
        self.dead_letters = meter.create_counter(
            "floworch.messages.dead_lettered",
            unit="{message}",
            description="Messages dead-lettered, by reason and entity",
        )
        self.claim_conflicts = meter.create_counter(
            "floworch.steps.claim_conflicts",
            unit="{message}",
            description="Step messages dropped at the claim (duplicates, stale dispatches)",
        )
        self.reconciler = meter.create_counter(
            "floworch.reconciler.actions",
            unit="{action}",
            description="Reconciler resends, redispatches of lost messages, take-overs, timeouts",
        )

    def observe_events(self, flow_id: str, events: Iterable[Any]) -> None:
        """Counts what a committed transition recorded (its run events); logs a run's start
        and end (events ``run.started``, ``run.finished``, with ``floworch.status``)."""
        for record in events:
            kind = str(record.kind)
            where = {"floworch.flow_id": flow_id, "floworch.run_id": record.run_id}
            if kind == "RunStarted":
                self.runs_started.add(1, {FLOW: flow_id})
                runs_log.info(
                    "run %s of %s started",
                    record.run_id,
                    flow_id,
                    extra=event("run.started", **where),
                )
            elif kind.startswith("Run") and record.step_key is None:
                self.runs_finished.add(1, {FLOW: flow_id, STATUS: kind[3:]})
                runs_log.info(
                    "run %s of %s finished: %s",
                    record.run_id,
                    flow_id,
                    kind[3:],
                    extra=event("run.finished", **where, **{STATUS: kind[3:]}),
                )
            counter = _EVENT_COUNTERS.get(kind)
            if counter is not None and record.step_key is not None:
                getattr(self, counter).add(1, {FLOW: flow_id, STEP: step_template(record.step_key)})
            if kind.startswith("Step") and kind[4:] in _TERMINAL and record.step_key is not None:
                self.steps_finished.add(
                    1, {FLOW: flow_id, STEP: step_template(record.step_key), STATUS: kind[4:]}
                )


_TERMINAL = frozenset({"Succeeded", "Failed", "Skipped", "TimedOut", "Cancelled"})

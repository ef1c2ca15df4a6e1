"""floworch.limits: the SQL columns are as long as the limits, and the rules hold for any text.

Issue 16 item 8: validation and the schema must agree, or ``validate`` passes and PostgreSQL
fails at run time.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Unicode

from floworch import limits
from floworch.model import RunStatus, StepStatus
from floworch.storage import sql
from floworch.storage.sql import schema

COLUMN_LIMITS = {
    "run_id": limits.RUN_ID_MAX_LENGTH,
    "source_run_id": limits.RUN_ID_MAX_LENGTH,
    "flow_id": limits.FLOW_ID_MAX_LENGTH,
    "version": limits.FLOW_VERSION_MAX_LENGTH,
    "flow_version": limits.FLOW_VERSION_MAX_LENGTH,
    "trigger_key": limits.TRIGGER_KEY_MAX_LENGTH,
    "step_key": limits.INSTANCE_KEY_MAX_LENGTH,
    "step_type": limits.STEP_TYPE_MAX_LENGTH,
    "signal_name": limits.SIGNAL_NAME_MAX_LENGTH,
    "idempotency_key": limits.IDEMPOTENCY_KEY_MAX_LENGTH,
    "cron_override": limits.CRON_EXPRESSION_MAX_LENGTH,
    "owner": limits.OWNER_MAX_LENGTH,
    "lease_owner": limits.OWNER_MAX_LENGTH,
    "lease_name": limits.LEASE_NAME_MAX_LENGTH,
    "kind": limits.EVENT_KIND_MAX_LENGTH,
    "status": limits.STATUS_MAX_LENGTH,
    "slug": limits.WEBHOOK_SLUG_MAX_LENGTH,
    "delivery_id": limits.WEBHOOK_DELIVERY_ID_MAX_LENGTH,
    "reason": limits.WEBHOOK_REJECTION_REASON_MAX_LENGTH,
}
"""Every bounded text column of the schema, by column name, and the limit it must equal."""


def _bounded_text_columns() -> list[tuple[str, str, int]]:
    # Tables may live in any module of the SQL adapter; importing them all registers them.
    for module in pkgutil.iter_modules(sql.__path__):
        if module.name != "migrations":
            importlib.import_module(f"{sql.__name__}.{module.name}")
    found = []
    for table in schema.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, Unicode) and column.type.length is not None:
                found.append((table.name, column.name, column.type.length))
    return found


def test_every_bounded_column_has_a_limit_of_the_same_length() -> None:
    columns = _bounded_text_columns()
    assert len(columns) > 30
    unknown = sorted({name for _, name, _ in columns} - set(COLUMN_LIMITS))
    assert unknown == [], f"add these columns and their limit to floworch.limits: {unknown}"
    wrong = [
        f"{table}.{name} is {length}, the limit is {COLUMN_LIMITS[name]}"
        for table, name, length in columns
        if length != COLUMN_LIMITS[name]
    ]
    assert wrong == []


def test_the_sql_server_variant_has_the_same_length() -> None:
    from sqlalchemy.dialects import mssql

    dialect = mssql.dialect()  # type: ignore[no-untyped-call]
    for table in schema.metadata.sorted_tables:
        for column in table.columns:
            if column.name in COLUMN_LIMITS and column.name != "status":
                rendered = column.type.compile(dialect=dialect)
                assert f"({COLUMN_LIMITS[column.name]})" in rendered, (table.name, rendered)


def test_statuses_fit_their_column() -> None:
    longest = max(len(status.value) for status in [*RunStatus, *StepStatus])
    assert longest <= limits.STATUS_MAX_LENGTH


def test_the_largest_iteration_index_has_the_digits_the_limit_assumes() -> None:
    assert len(str(limits.MAX_FOR_EACH_ITEMS - 1)) == limits.FOR_EACH_INDEX_MAX_LENGTH


# --- the rules, for any text ---------------------------------------------------------------------

_CHECKS = [
    (limits.step_key_problem, limits.STEP_KEY_PATTERN, limits.STEP_KEY_MAX_LENGTH),
    (limits.trigger_key_problem, limits.ID_PATTERN, limits.TRIGGER_KEY_MAX_LENGTH),
    (limits.flow_id_problem, limits.ID_PATTERN, limits.FLOW_ID_MAX_LENGTH),
    (limits.webhook_slug_problem, limits.ID_PATTERN, limits.WEBHOOK_SLUG_MAX_LENGTH),
    (limits.queue_name_problem, limits.QUEUE_NAME_PATTERN, limits.QUEUE_NAME_MAX_LENGTH),
    (
        limits.header_name_problem,
        limits.HTTP_HEADER_NAME_PATTERN,
        limits.HTTP_HEADER_NAME_MAX_LENGTH,
    ),
]
_KEYLIKE = st.text(alphabet=st.sampled_from("aZ09_-./:\n\r\t\x00 é\u2028"), max_size=12) | st.text()


@settings(max_examples=200, deadline=None)
@given(text=_KEYLIKE, repeat=st.integers(min_value=1, max_value=60))
def test_a_key_is_valid_exactly_when_its_json_schema_pattern_and_length_say_so(
    text: str, repeat: int
) -> None:
    value = text * repeat  # long values too, around every length limit
    for problem, pattern, max_length in _CHECKS:
        expected = re.fullmatch(pattern, value) is not None and len(value) <= max_length
        assert (problem(value) is None) is expected, (problem.__name__, value)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_a_valid_name_never_holds_control_characters(text: str) -> None:
    for problem in (
        limits.signal_name_problem,
        limits.idempotency_key_problem,
        limits.flow_version_problem,
        limits.step_type_problem,
        limits.step_key_problem,
        limits.trigger_key_problem,
        limits.header_name_problem,
        limits.webhook_delivery_id_problem,
    ):
        if problem(text) is None:
            assert text and text.isprintable() and "\x00" not in text and "\n" not in text
            assert len(text) <= 150


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(
        st.from_regex(rf"\A{limits.STEP_KEY_PATTERN}\Z").filter(
            lambda key: len(key) <= limits.STEP_KEY_MAX_LENGTH
        ),
        min_size=1,
        max_size=6,
    ),
    indexes=st.lists(
        st.integers(min_value=0, max_value=limits.MAX_FOR_EACH_ITEMS - 1), min_size=5, max_size=5
    ),
)
def test_every_instance_key_the_engine_can_build_is_within_the_computed_length(
    keys: list[str], indexes: list[int]
) -> None:
    built = keys[0]
    for key, index in zip(keys[1:], indexes, strict=False):
        built = f"{built}.{index}.{key}"
    assert len(built) <= limits.instance_key_length(keys)


@settings(max_examples=200, deadline=None)
@given(seconds=st.floats(min_value=0, max_value=limits.MAX_DURATION_SECONDS))
def test_any_allowed_duration_can_be_added_to_any_time_before_year_9998(seconds: float) -> None:
    assert limits.duration_problem(seconds) is None
    late = datetime(9998, 1, 1, tzinfo=UTC)
    assert late + timedelta(seconds=seconds) >= late - timedelta(seconds=seconds)  # no overflow


@given(seconds=st.floats(min_value=limits.MAX_DURATION_SECONDS, exclude_min=True))
def test_any_longer_duration_is_refused(seconds: float) -> None:
    assert limits.duration_problem(seconds) is not None

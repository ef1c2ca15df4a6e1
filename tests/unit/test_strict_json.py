"""Strict JSON decoding (issue 16.11): NaN, Infinity and overflowing numbers are not JSON."""

from __future__ import annotations

import pytest

from floworch import strict_json


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"x": NaN}', "NaN is not JSON"),
        ("[Infinity]", "Infinity is not JSON"),
        ("-Infinity", "-Infinity is not JSON"),
        ('{"x": 1e999}', "1e999 is too large"),
        ("[-1.5E400]", "too large"),
        ("{'x': 1}", "line 1, column 2"),
        (b"\xff\xfe", "not UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("1" * 5000, "digits"),
    ],
)
def test_what_is_not_json_is_refused_with_the_reason(text: str | bytes, why: str) -> None:
    with pytest.raises(strict_json.NotStrictJsonError, match=why):
        strict_json.loads(text)


def test_json_decodes_as_usual() -> None:
    assert strict_json.loads(b'{"a": [1, 2.5, -3e10, null, true, "NaN"]}') == {
        "a": [1, 2.5, -3e10, None, True, "NaN"]
    }
    assert isinstance(strict_json.NotStrictJsonError("x"), ValueError)

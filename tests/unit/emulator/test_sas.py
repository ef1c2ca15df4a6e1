"""Shared access signature checks of the emulator (floworch.emulator.sas)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

from floworch.emulator.sas import check_sas_token, parse_sas_token, path_covers, split_resource

NOW = 1_800_000_000


def token(resource: str, key: str = "k", *, expiry: int = NOW + 60, name: str = "root") -> str:
    sr = urllib.parse.quote_plus(resource)
    digest = hmac.new(key.encode(), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote_plus(base64.b64encode(digest))
    return f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={name}"


def test_a_parent_path_covers_its_children_on_segment_boundaries() -> None:
    assert path_covers("", "orders")
    assert path_covers("orders", "Orders/Subscriptions/x")
    assert path_covers("orders/", "orders")
    assert not path_covers("orders", "orders-eu")
    assert not path_covers("orders/subscriptions/a", "orders")


def test_resources_compare_without_scheme_or_case() -> None:
    assert split_resource("sb://NS:5671/Orders/") == ("ns:5671", "orders")
    assert split_resource("https://ns") == ("ns", "")


def test_signature_key_expiry_and_audience_are_each_checked() -> None:
    keys = {"root": "k"}
    good = token("sb://ns/orders")
    assert check_sas_token(good, keys, audience="sb://ns/orders/subscriptions/a", now=NOW) is None
    assert "does not match the key" in str(check_sas_token(token("sb://ns", "x"), keys, now=NOW))
    assert "unknown SharedAccessKeyName" in str(
        check_sas_token(token("sb://ns", name="other"), keys, now=NOW)
    )
    assert "expired" in str(check_sas_token(token("sb://ns", expiry=NOW - 1), keys, now=NOW))
    assert "does not cover" in str(check_sas_token(good, keys, audience="sb://ns/other", now=NOW))
    assert "does not cover" in str(check_sas_token(good, keys, audience="sb://ns2/orders", now=NOW))


def test_malformed_tokens_say_what_is_wrong() -> None:
    assert parse_sas_token(None) == "missing shared access signature"
    assert "must be a SharedAccessSignature" in str(parse_sas_token("Bearer x"))
    assert "lacks sig, se, skn" in str(parse_sas_token("SharedAccessSignature sr=x"))
    assert "Unix time" in str(parse_sas_token("SharedAccessSignature sr=a&sig=b&se=soon&skn=c"))

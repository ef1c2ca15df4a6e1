"""Auth: every mutation refused without a token off loopback; a read-only token cannot cancel;
App Service principals; cross-site form posts refused; tokens never echoed."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator

import pytest

from floworch.api import AuthConfig
from floworch.api.auth import AuthMode
from floworch.hosting.http import ApiEnvironment, HostConfigError, auth_for
from floworch.storage.factory import open_store

from .conftest import Api, start_api

OPERATOR = "op-token-0123456789"
READER = "read-token-0123456789"


@pytest.fixture
async def secured() -> AsyncIterator[Api]:
    store = await open_store("memory://")
    running = await start_api(store, auth=AuthConfig.tokens(OPERATOR, READER))
    running.client.headers.pop("X-Floworch-Request")
    yield running
    await running.client.aclose()
    await running.host.stop()


def _mutations(api: Api) -> list[tuple[str, str]]:
    schema = api.app.openapi()
    found = []
    for path, item in schema["paths"].items():
        for method in item:
            if method in ("post", "put", "patch", "delete") and not path.startswith(
                "/api/webhooks/"
            ):
                url = path
                for name in ("flowId", "runId", "stepKey", "triggerKey", "name", "slug"):
                    url = url.replace("{" + name + "}", "x")
                found.append((method.upper(), url))
    return found


async def test_every_mutation_needs_a_token_and_the_operator_role(secured: Api) -> None:
    mutations = _mutations(secured)
    assert len(mutations) >= 12
    for method, url in mutations:
        anonymous = await secured.client.request(method, url, json={})
        assert anonymous.status_code == 401, (method, url, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        wrong = await secured.client.request(
            method, url, json={}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401, (method, url)
        read_only = await secured.client.request(
            method, url, json={}, headers={"Authorization": f"Bearer {READER}"}
        )
        assert read_only.status_code == 403, (method, url, read_only.text)
        assert READER not in read_only.text
    assert (await secured.client.get("/api/runs")).status_code == 401


async def test_a_read_only_token_reads_but_cannot_cancel(secured: Api) -> None:
    op = {"Authorization": f"Bearer {OPERATOR}"}
    ro = {"Authorization": f"Bearer {READER}"}
    run = await secured.client.post("/api/flows/orders/runs", json={}, headers=op)
    assert run.status_code == 202, run.text
    run_id = run.json()["runId"]
    assert (await secured.client.get(f"/api/runs/{run_id}", headers=ro)).status_code == 200
    refused = await secured.client.post(f"/api/runs/{run_id}/cancel", headers=ro)
    assert refused.status_code == 403 and "operator" in refused.json()["detail"]
    assert (await secured.client.get(f"/api/runs/{run_id}", headers=ro)).json()["status"] == (
        "Running"
    )
    done = await secured.client.post(f"/api/runs/{run_id}/cancel", headers=op)
    assert done.status_code == 200
    assert (await secured.client.get("/healthz")).status_code == 200
    assert (await secured.client.get("/readyz")).status_code == 200


async def test_tokens_never_reach_responses_or_logs(
    secured: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    op = {"Authorization": f"Bearer {OPERATOR}", "Cookie": "session=s3cr3t"}
    run = await secured.client.post("/api/flows/orders/runs", json={}, headers=op)
    detail = await secured.client.get(f"/api/runs/{run.json()['runId']}", headers=op)
    assert OPERATOR not in detail.text and "s3cr3t" not in detail.text
    assert "authorization" not in {k.lower() for k in detail.json()["triggerHeaders"]}
    assert OPERATOR not in caplog.text and READER not in caplog.text
    assert OPERATOR not in repr(AuthConfig.tokens(OPERATOR, READER))


async def test_cross_site_form_posts_are_refused_when_auth_is_off(memory_api: Api) -> None:
    c = memory_api.client
    c.headers.pop("X-Floworch-Request")
    form = await c.post(
        "/api/flows/orders/disable",
        content=b"x=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 403 and form.json()["type"].endswith("csrf")
    other_origin = await c.post(
        "/api/flows/orders/disable", json={}, headers={"Origin": "https://evil.example"}
    )
    assert other_origin.status_code == 403
    cross = await c.post(
        "/api/flows/orders/disable", json={}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    same = await c.post(
        "/api/flows/orders/disable", json={}, headers={"Origin": "http://testserver"}
    )
    assert same.status_code == 200
    assert (await c.post("/api/flows/orders/enable", headers={"X-Floworch-Request": "1"})).json()[
        "enabled"
    ]


def _principal(*roles: str) -> str:
    claims = [{"typ": "roles", "val": r} for r in roles] + [{"typ": "name", "val": "ada"}]
    data = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(data).encode()).decode()


async def test_app_service_principals_map_onto_roles() -> None:
    store = await open_store("memory://")
    api = await start_api(store, auth=AuthConfig(mode=AuthMode.APP_SERVICE))
    try:
        c = api.client
        assert (await c.get("/api/flows")).status_code == 401
        reader = {"X-MS-CLIENT-PRINCIPAL": _principal("floworch.reader")}
        operator = {"X-MS-CLIENT-PRINCIPAL": _principal("floworch.operator")}
        nobody = {"X-MS-CLIENT-PRINCIPAL": _principal("other")}
        assert (await c.get("/api/flows", headers=reader)).status_code == 200
        assert (await c.post("/api/flows/orders/disable", headers=reader)).status_code == 403
        assert (await c.get("/api/flows", headers=nobody)).status_code == 403
        assert (await c.post("/api/flows/orders/disable", headers=operator)).status_code == 200
        bad = {"X-MS-CLIENT-PRINCIPAL": "%%%"}
        assert (await c.get("/api/flows", headers=bad)).status_code == 401
    finally:
        await api.client.aclose()
        await api.host.stop()


def test_a_non_loopback_host_without_a_token_refuses_to_start() -> None:
    with pytest.raises(HostConfigError, match="FLOWORCH_API_TOKEN"):
        auth_for(ApiEnvironment(), "0.0.0.0")
    assert auth_for(ApiEnvironment(), "127.0.0.1").mode == AuthMode.NONE
    assert auth_for(ApiEnvironment(), "::1").mode == AuthMode.NONE
    assert auth_for(ApiEnvironment(), "0.0.0.0", insecure_no_auth=True).mode == AuthMode.NONE
    assert auth_for(ApiEnvironment(token="t"), "0.0.0.0").mode == AuthMode.TOKEN
    assert auth_for(ApiEnvironment(token="t"), "127.0.0.1").mode == AuthMode.TOKEN
    assert auth_for(ApiEnvironment(auth="appservice"), "0.0.0.0").mode == AuthMode.APP_SERVICE
    with pytest.raises(HostConfigError, match="FLOWORCH_API_AUTH"):
        auth_for(ApiEnvironment(auth="basic"), "127.0.0.1")
    env = ApiEnvironment.from_env({"FLOWORCH_API_TOKEN": "a", "FLOWORCH_API_READ_TOKEN": "b"})
    assert (env.token, env.read_token) == ("a", "b")

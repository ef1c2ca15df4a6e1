"""The real ServiceBusAdministrationClient (sync and aio) against ManagementServer over HTTPS."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.servicebus.management import (
    CorrelationRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from floworch.emulator.entities import EntityRuntimeInfo
from floworch.emulator.management import ManagementServer
from floworch.emulator.memory_backend import InMemoryManagementBackend

pytestmark = pytest.mark.emulator


class CountingBackend(InMemoryManagementBackend):
    """Reports fixed message counts so runtime properties can be checked end to end."""

    def get_queue_runtime_info(self, name: str) -> EntityRuntimeInfo:
        info = super().get_queue_runtime_info(name)
        return EntityRuntimeInfo(
            created_at=info.created_at,
            updated_at=info.updated_at,
            accessed_at=info.accessed_at,
            active_message_count=3,
            dead_letter_message_count=2,
            scheduled_message_count=1,
            size_in_bytes=600,
        )


@pytest.fixture
def server() -> Iterator[ManagementServer]:
    mgmt = ManagementServer(CountingBackend(), shared_access_keys={"k": "secret"})
    mgmt.start()
    try:
        yield mgmt
    finally:
        mgmt.stop()


@pytest.fixture
def client(server: ManagementServer) -> Iterator[ServiceBusAdministrationClient]:
    with ServiceBusAdministrationClient.from_connection_string(
        server.connection_string("k", "secret"),
        connection_verify=str(server.ca_file),
        retry_total=0,
    ) as admin:
        yield admin


def test_queue_lifecycle(client: ServiceBusAdministrationClient) -> None:
    created = client.create_queue(
        "orders",
        lock_duration=timedelta(seconds=30),
        max_delivery_count=3,
        requires_session=True,
        default_message_time_to_live=timedelta(hours=1),
        dead_lettering_on_message_expiration=True,
    )
    assert created.name == "orders"
    assert created.lock_duration == timedelta(seconds=30)
    fetched = client.get_queue("ORDERS")  # names are case-insensitive
    assert fetched.max_delivery_count == 3
    assert fetched.requires_session is True
    assert fetched.default_message_time_to_live == timedelta(hours=1)
    assert fetched.dead_lettering_on_message_expiration is True
    assert fetched.duplicate_detection_history_time_window == timedelta(minutes=10)

    fetched.max_delivery_count = 8
    client.update_queue(fetched)
    assert client.get_queue("orders").max_delivery_count == 8

    runtime = client.get_queue_runtime_properties("orders")
    assert runtime.active_message_count == 3
    assert runtime.dead_letter_message_count == 2
    assert runtime.scheduled_message_count == 1
    assert runtime.total_message_count == 6
    assert runtime.size_in_bytes == 600
    assert runtime.created_at_utc is not None

    client.create_queue("other")
    assert [q.name for q in client.list_queues()] == ["orders", "other"]
    assert [q.name for q in client.list_queues_runtime_properties()] == ["orders", "other"]
    client.delete_queue("orders")
    assert [q.name for q in client.list_queues()] == ["other"]


@pytest.mark.slow
def test_list_pages_through_many_queues(client: ServiceBusAdministrationClient) -> None:
    names = [f"q{i:03d}" for i in range(130)]  # more than one page of 100
    for name in names:
        client.create_queue(name)
    assert [q.name for q in client.list_queues()] == names


def test_errors_as_the_sdk_raises_them(
    client: ServiceBusAdministrationClient,
) -> None:
    client.create_queue("q")
    with pytest.raises(ResourceExistsError):
        client.create_queue("q")
    with pytest.raises(ResourceExistsError):
        client.create_topic("Q")  # queues and topics share one name space
    with pytest.raises(ResourceNotFoundError):
        client.get_queue("missing")
    with pytest.raises(ResourceNotFoundError):
        client.delete_queue("missing")
    with pytest.raises(ResourceNotFoundError):
        client.get_subscription("missing", "s")
    with pytest.raises(ResourceNotFoundError):
        client.create_subscription("missing", "s")
    client.create_topic("t")
    client.create_subscription("t", "s")
    with pytest.raises(ResourceNotFoundError):
        client.get_rule("t", "s", "missing")
    with pytest.raises(ResourceExistsError):
        client.create_rule("t", "s", "$Default")
    with pytest.raises(HttpResponseError, match="column"):
        client.create_rule("t", "s", "bad", filter=SqlRuleFilter("a = "))


def test_topic_subscription_and_rules(client: ServiceBusAdministrationClient) -> None:
    client.create_topic("events", default_message_time_to_live=timedelta(days=2))
    assert client.get_topic("events").default_message_time_to_live == timedelta(days=2)
    sub = client.create_subscription("events", "audit", lock_duration=timedelta(seconds=20))
    assert sub.lock_duration == timedelta(seconds=20)
    sub.max_delivery_count = 4
    client.update_subscription("events", sub)
    assert client.get_subscription("events", "audit").max_delivery_count == 4
    assert client.get_topic_runtime_properties("events").subscription_count == 1
    assert client.get_subscription_runtime_properties("events", "audit").total_message_count == 0

    correlation = CorrelationRuleFilter(
        correlation_id="c1",
        label="order",
        content_type="application/json",
        properties={"tenant": "a", "n": 7, "big": 2**40, "ok": True, "ratio": 0.5},
    )
    created = client.create_rule(
        "events", "audit", "orders", filter=correlation, action=SqlRuleAction("SET user.x = 1")
    )
    assert isinstance(created.filter, CorrelationRuleFilter)
    rule = client.get_rule("events", "audit", "orders")
    assert isinstance(rule.filter, CorrelationRuleFilter)
    assert rule.filter.correlation_id == "c1"
    assert rule.filter.label == "order"
    assert rule.filter.content_type == "application/json"
    assert rule.filter.properties is not None
    assert dict(rule.filter.properties) == {
        "tenant": "a",
        "n": 7,
        "big": 2**40,
        "ok": True,
        "ratio": 0.5,
    }
    assert isinstance(rule.action, SqlRuleAction)
    assert rule.action.sql_expression == "SET user.x = 1"

    client.create_rule("events", "audit", "sql", filter=SqlRuleFilter("amount > 10"))
    sql_rule = client.get_rule("events", "audit", "sql")
    assert isinstance(sql_rule.filter, SqlRuleFilter)
    assert sql_rule.filter.sql_expression == "amount > 10"
    sql_rule.filter = SqlRuleFilter("amount > 20")
    client.update_rule("events", "audit", sql_rule)
    updated = client.get_rule("events", "audit", "sql")
    assert isinstance(updated.filter, SqlRuleFilter)
    assert updated.filter.sql_expression == "amount > 20"

    rules = list(client.list_rules("events", "audit"))
    assert [r.name for r in rules] == ["$Default", "orders", "sql"]
    assert isinstance(rules[0].filter, TrueRuleFilter)
    second = rules[1].filter
    assert isinstance(second, CorrelationRuleFilter) and second.properties is not None
    assert dict(second.properties)["tenant"] == "a"

    client.delete_rule("events", "audit", "$Default")
    assert [r.name for r in client.list_rules("events", "audit")] == ["orders", "sql"]
    assert [s.name for s in client.list_subscriptions("events")] == ["audit"]
    client.delete_subscription("events", "audit")
    assert list(client.list_subscriptions("events")) == []
    assert [t.name for t in client.list_topics()] == ["events"]
    client.delete_topic("events")
    assert list(client.list_topics()) == []


def test_wrong_key_is_rejected(server: ManagementServer) -> None:
    with (
        ServiceBusAdministrationClient.from_connection_string(
            server.connection_string("k", "wrong"),
            connection_verify=str(server.ca_file),
            retry_total=0,
        ) as admin,
        pytest.raises(ClientAuthenticationError),
    ):
        admin.get_queue("q")


def _raw_request(
    server: ManagementServer, method: str, path: str, body: bytes = b"", auth: str | None = None
) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=30)
    try:
        headers = {"Authorization": auth} if auth is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_bad_requests_get_4xx_and_the_server_survives(server: ManagementServer) -> None:
    assert _raw_request(server, "GET", "/q")[0] == 401
    assert _raw_request(server, "GET", "/q", auth="Bearer x")[0] == 401
    assert _raw_request(server, "GET", "/q", auth="SharedAccessSignature sr=x")[0] == 401
    # A well-formed token for an unknown key is rejected too, since keys are configured.
    token = "SharedAccessSignature sr=x&sig=y&se=99999999999&skn=other"
    assert _raw_request(server, "GET", "/q", auth=token)[0] == 401


def test_malformed_xml_is_a_400(server: ManagementServer) -> None:
    open_server = ManagementServer(InMemoryManagementBackend())  # well-formedness only
    open_server.start()
    try:
        token = "SharedAccessSignature sr=x&sig=y&se=99999999999&skn=k"
        status, body = _raw_request(open_server, "PUT", "/q", b"<entry><unclosed>", auth=token)
        assert status == 400
        assert b"malformed XML" in body
        status, _ = _raw_request(open_server, "PUT", "/q", b"not xml at all", auth=token)
        assert status == 400
        status, _ = _raw_request(open_server, "GET", "/$Resources/queues?$top=x", auth=token)
        assert status == 400
        assert _raw_request(open_server, "GET", "/$Resources/queues", auth=token)[0] == 200
    finally:
        open_server.stop()


async def test_async_client(server: ManagementServer) -> None:
    # The aio admin client needs aiohttp, which floworch[servicebus] does not pull in yet.
    pytest.importorskip("aiohttp", reason="the aio admin client needs aiohttp")
    from azure.servicebus.aio.management import (
        ServiceBusAdministrationClient as AsyncAdministrationClient,
    )

    async with AsyncAdministrationClient.from_connection_string(
        server.connection_string("k", "secret"),
        connection_verify=str(server.ca_file),
        retry_total=0,
    ) as admin:
        await admin.create_queue("aq", max_delivery_count=2)
        assert (await admin.get_queue("aq")).max_delivery_count == 2
        await admin.create_topic("at")
        await admin.create_subscription("at", "s")
        await admin.create_rule("at", "s", "r", filter=SqlRuleFilter("a = 1"))
        assert [r.name async for r in admin.list_rules("at", "s")] == ["$Default", "r"]
        assert [q.name async for q in admin.list_queues()] == ["aq"]
        with pytest.raises(ResourceNotFoundError):
            await admin.get_topic("missing")
        with pytest.raises(ResourceExistsError):
            await admin.create_queue("aq")
        await admin.delete_topic("at")
        await admin.delete_queue("aq")


def test_stop_is_clean_and_restartable() -> None:
    mgmt = ManagementServer(InMemoryManagementBackend())
    with mgmt:
        ca_file = mgmt.ca_file
        assert ca_file.exists()
    assert not ca_file.exists()
    mgmt.start()
    mgmt.stop()

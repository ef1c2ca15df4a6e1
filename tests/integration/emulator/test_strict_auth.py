"""``--strict-auth`` (issue 16.16): shared access signatures checked as Service Bus does, on AMQP
(the key, and the token's ``sr`` against the entity) and on the management API (``sr`` against
the requested URL). Without it, AMQP accepts any key: the documented development default."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusAuthenticationError
from azure.servicebus.management import ServiceBusAdministrationClient

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import QueueSettings as QueueSpec
from floworch.emulator.server import DEFAULT_KEY, DEFAULT_KEY_NAME
from floworch.testing.servicebus import start_servicebus_emulator

pytestmark = pytest.mark.emulator


def sas_token(resource: str, key: str = DEFAULT_KEY, key_name: str = DEFAULT_KEY_NAME) -> str:
    sr = urllib.parse.quote_plus(resource)
    expiry = int(time.time()) + 3600
    digest = hmac.new(key.encode(), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote_plus(base64.b64encode(digest))
    return f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={key_name}"


def with_token(emulator: ServiceBusEmulator, token: str) -> str:
    """A connection string that presents ``token`` for every entity (the SDK sends it as is)."""
    return (
        f"Endpoint=sb://127.0.0.1:{emulator.port};SharedAccessSignature={token};"
        "UseDevelopmentEmulator=true"
    )


def send_and_receive(connection_string: str, queue: str = "q") -> str:
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("hello"))
        with client.get_queue_receiver(queue, max_wait_time=10) as receiver:
            (message,) = receiver.receive_messages(max_message_count=1, max_wait_time=10)
            receiver.complete_message(message)  # settles over the link: the lock is honoured
            return str(message)


@pytest.fixture(scope="module")
def strict() -> Iterator[ServiceBusEmulator]:
    emulator = start_servicebus_emulator(strict_auth=True)
    for name in ("q", "other"):
        emulator.backend.create_queue(QueueSpec(name=name))
    try:
        yield emulator
    finally:
        emulator.stop()


def test_strict_auth_accepts_the_emulators_own_connection_string(
    strict: ServiceBusEmulator,
) -> None:
    assert send_and_receive(strict.connection_string) == "hello"


def test_strict_auth_refuses_a_wrong_key_on_amqp(strict: ServiceBusEmulator) -> None:
    wrong = strict.connection_string.replace(f"SharedAccessKey={DEFAULT_KEY}", "SharedAccessKey=x")
    with pytest.raises(ServiceBusAuthenticationError):
        send_and_receive(wrong)


def test_strict_auth_refuses_a_token_whose_sr_is_another_entity(
    strict: ServiceBusEmulator,
) -> None:
    for_other = sas_token(f"sb://127.0.0.1:{strict.port}/other")
    with pytest.raises(ServiceBusAuthenticationError):
        send_and_receive(with_token(strict, for_other), queue="q")
    assert send_and_receive(with_token(strict, for_other), queue="other") == "hello"
    # A token for the namespace covers every entity, as in Service Bus.
    for_namespace = sas_token(f"sb://127.0.0.1:{strict.port}/")
    assert send_and_receive(with_token(strict, for_namespace), queue="q") == "hello"


def test_without_strict_auth_amqp_accepts_any_key() -> None:
    emulator = start_servicebus_emulator()
    try:
        emulator.backend.create_queue(QueueSpec(name="q"))
        wrong = emulator.connection_string.replace(DEFAULT_KEY, "anything")
        assert send_and_receive(wrong) == "hello"
    finally:
        emulator.stop()


def management_get(emulator: ServiceBusEmulator, path: str, token: str) -> int:
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    request = urllib.request.Request(
        f"https://127.0.0.1:{emulator.management_port}/{path}?api-version=2021-05",
        headers={"Authorization": token},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_strict_auth_checks_sr_on_the_management_api(strict: ServiceBusEmulator) -> None:
    base = f"https://127.0.0.1:{strict.management_port}"
    assert management_get(strict, "q", sas_token(base)) == 200
    assert management_get(strict, "q", sas_token(f"{base}/q")) == 200
    assert management_get(strict, "q", sas_token(f"{base}/other")) == 401
    assert management_get(strict, "q", sas_token("https://127.0.0.1:1")) == 401
    assert management_get(strict, "q", sas_token(base, key="wrong")) == 401
    with ServiceBusAdministrationClient.from_connection_string(
        strict.management_connection_string, connection_verify=str(strict.ca_file), retry_total=0
    ) as admin:
        assert admin.get_queue("q").name == "q"


def test_without_strict_auth_management_checks_the_key_but_not_sr() -> None:
    emulator = start_servicebus_emulator()
    try:
        emulator.backend.create_queue(QueueSpec(name="q"))
        assert management_get(emulator, "q", sas_token("https://elsewhere/other")) == 200
        assert management_get(emulator, "q", sas_token("https://x", key="wrong")) == 401
        wrong = emulator.management_connection_string.replace(DEFAULT_KEY, "nope")
        with (
            ServiceBusAdministrationClient.from_connection_string(
                wrong, connection_verify=str(emulator.ca_file), retry_total=0
            ) as admin,
            pytest.raises(ClientAuthenticationError),
        ):
            admin.get_queue("q")
    finally:
        emulator.stop()

"""The topology backend contract (issue 9.25) on the admin backend against the emulator's HTTPS
management API, and on the ARM backend against the local ARM fake: real SDKs, real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.mgmt.servicebus import ServiceBusManagementClient
from azure.servicebus.management import ServiceBusAdministrationClient

from floworch.emulator import ServiceBusEmulator
from floworch.runtime.servicebus.topology.admin import AdminNamespace
from floworch.runtime.servicebus.topology.arm import ArmNamespace
from floworch.testing.arm_fake import ArmServiceBusFake
from floworch.testing.topology_contract import NamespaceBackendContract


@pytest.fixture(scope="module")
def admin_client(emulator: ServiceBusEmulator) -> Iterator[ServiceBusAdministrationClient]:
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.management_connection_string,
        connection_verify=str(emulator.ca_file),
        retry_total=0,
    ) as client:
        yield client


@pytest.mark.emulator
class TestAdminNamespaceOnTheEmulator(NamespaceBackendContract):
    @pytest.fixture
    def backend(self, admin_client: ServiceBusAdministrationClient) -> AdminNamespace:
        return AdminNamespace(admin_client)


@pytest.fixture(scope="module")
def arm_namespace() -> Iterator[ArmNamespace]:
    with (
        ArmServiceBusFake(page_size=5) as fake,
        ServiceBusManagementClient(
            fake.credential(),
            fake.subscription_id,
            base_url=fake.url,
            connection_verify=str(fake.ca_file),
            retry_total=0,
        ) as client,
    ):
        yield ArmNamespace(client, fake.resource_group, fake.namespace)


class TestArmNamespaceOnTheFake(NamespaceBackendContract):
    @pytest.fixture
    def backend(self, arm_namespace: ArmNamespace) -> ArmNamespace:
        return arm_namespace

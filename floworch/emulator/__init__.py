"""A local Azure Service Bus emulator (AMQP 1.0 + HTTPS management) for tests and development.

Example:
    >>> with ServiceBusEmulator() as emulator:
    ...     print(emulator.connection_string)
"""

from floworch.emulator.server import ServiceBusEmulator

__all__ = ["ServiceBusEmulator"]

"""Benchmark the local Service Bus emulator with the real aio SDK on loopback.

Prints send->receive->complete round-trip p50/p99 and messages/s through one topic/subscription
with 1 and 8 concurrent receivers. The emulator runs in its own process (``python -m
floworch.emulator``) so that it does not share the GIL with the SDK; pass ``--in-process`` to
measure both in one process. Run: ``.venv/bin/python bench/emulator.py``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import SubscriptionSettings, TopicSettings

ROUND_TRIPS = 300
THROUGHPUT_MESSAGES = 5000


TOPICS = ("rt", "tp1", "tp8")


async def round_trips(connection_string: str) -> list[float]:
    samples = []
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_topic_sender("rt") as sender,
        client.get_subscription_receiver("rt", "s") as receiver,
    ):
        for i in range(ROUND_TRIPS + 20):
            start = time.perf_counter()
            await sender.send_messages(ServiceBusMessage(f"m{i}"))
            got = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            await receiver.complete_message(got[0])
            if i >= 20:  # warm-up excluded
                samples.append(time.perf_counter() - start)
    return samples


async def throughput(connection_string: str, receivers: int) -> float:
    topic = f"tp{receivers}"
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        opened: list[ServiceBusReceiver] = [
            client.get_subscription_receiver(topic, "s", prefetch_count=200)
            for _ in range(receivers)
        ]
        await asyncio.gather(*(r.__aenter__() for r in opened))
        sender = client.get_topic_sender(topic)
        await sender.__aenter__()
        done = 0

        async def consume(receiver: ServiceBusReceiver) -> None:
            nonlocal done
            while done < THROUGHPUT_MESSAGES:
                got = await receiver.receive_messages(max_message_count=100, max_wait_time=0.5)
                for msg in got:
                    await receiver.complete_message(msg)
                done += len(got)

        async def produce() -> None:
            for start in range(0, THROUGHPUT_MESSAGES, 100):
                batch = await sender.create_message_batch()
                for i in range(start, start + 100):
                    batch.add_message(ServiceBusMessage(f"m{i}"))
                await sender.send_messages(batch)

        began = time.perf_counter()
        await asyncio.gather(produce(), *(consume(r) for r in opened))
        elapsed = time.perf_counter() - began
        await sender.close()
        await asyncio.gather(*(r.close() for r in opened))
    return THROUGHPUT_MESSAGES / elapsed


async def measure(connection_string: str) -> None:
    samples = sorted(await round_trips(connection_string))
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99) - 1] * 1000
    print(f"round trip send->receive->complete (n={len(samples)}):")
    print(f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms")
    for receivers in (1, 8):
        rate = await throughput(connection_string, receivers)
        print(
            f"throughput, {THROUGHPUT_MESSAGES} msgs, batch send 100, prefetch 200, "
            f"{receivers} receiver(s): {rate:.0f} msg/s"
        )


def in_process() -> None:
    with ServiceBusEmulator() as emulator:
        for topic in TOPICS:
            emulator.backend.create_topic(TopicSettings(name=topic))
            emulator.backend.create_subscription(SubscriptionSettings(topic_name=topic, name="s"))
        asyncio.run(measure(emulator.connection_string))


def out_of_process() -> None:
    topology = {"topics": [{"name": t, "subscriptions": [{"name": "s"}]} for t in TOPICS]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "servicebus.json"
        path.write_text(json.dumps(topology))
        proc = subprocess.Popen(
            [sys.executable, "-m", "floworch.emulator", "--topology", str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            connection_string = proc.stdout.readline().strip()
            asyncio.run(measure(connection_string))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


if __name__ == "__main__":
    print("emulator in-process" if "--in-process" in sys.argv else "emulator in its own process")
    in_process() if "--in-process" in sys.argv else out_of_process()

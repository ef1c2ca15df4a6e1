"""The AMQP 1.0 side of the emulator: a python-qpid-proton reactor handler.

One :class:`AmqpHandler` serves every connection. It runs on the reactor thread, which is the only
thread that touches the broker; other threads reach it with :meth:`AmqpHandler.call_soon`, which
injects an event into the reactor. Every event handler is guarded so that nothing a client sends
can stop the reactor: a failure closes the offending link or connection with an AMQP error.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from proton import Condition, Delivery, Endpoint, Handler, Link, Message, Terminus, int32, symbol
from proton.reactor import ApplicationEvent, EventInjector

from floworch.emulator.amqp_links import (
    DECODE_ERROR,
    INCOMING_WINDOW,
    INTERNAL_ERROR,
    LOCK_LOST,
    MESSAGE_SIZE_EXCEEDED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    UNAUTHORIZED,
    ConnectionContext,
    LinkContext,
    LinkRole,
    error_condition,
    has_session_filter,
    node_of,
)
from floworch.emulator.amqp_message import AmqpDecodeError, decode_message, split_batch
from floworch.emulator.broker import Broker
from floworch.emulator.entities import EntityNotFound
from floworch.emulator.message_store import (
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    EntityStore,
    LockLost,
    StoredMessage,
)
from floworch.emulator.mgmt_ops import ManagementReply, handle_management_request
from floworch.emulator.sas import check_sas_token, path_covers, split_resource

_log = logging.getLogger(__name__)

_CALL_EVENT = "floworch_call"

_F = TypeVar("_F", bound=Callable[..., None])


def _guarded(method: _F) -> _F:
    """Log and contain any exception so a bad client cannot stop the reactor thread."""

    @functools.wraps(method)
    def wrapper(self: AmqpHandler, event: Any) -> None:
        try:
            method(self, event)
        except Exception as exc:
            _log.exception("emulator: %s failed", method.__name__)
            self._fail(event, exc)
        try:
            self._after_event()
        except Exception:
            _log.exception("emulator: post-event processing failed")

    return wrapper  # type: ignore[return-value]


class AmqpHandler(Handler):
    """Serves Service Bus over AMQP 1.0 on one listening socket.

    Args:
        broker: The broker this handler owns (and only this handler's thread may touch).
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one (see :attr:`port` once ready).
        max_message_size: Largest accepted transfer in bytes.
        on_ready: Called on the reactor thread with the bound port, or with the startup error.
        shared_access_keys: Key name -> key, checked on ``$cbs`` tokens with ``strict_auth``.
        strict_auth: Check each ``put-token`` as Service Bus does (signature under a known key,
            unexpired, ``sr`` covering the token's audience) and refuse links to entities no
            accepted token of the connection covers. Without it any token is accepted.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        host: str,
        port: int,
        max_message_size: int,
        on_ready: Callable[[int | BaseException], None],
        shared_access_keys: Mapping[str, str] | None = None,
        strict_auth: bool = False,
    ) -> None:
        super().__init__()
        self.broker = broker
        self.host = host
        self.port = port
        self.max_message_size = max_message_size
        self.keys = dict(shared_access_keys or {})
        self.strict_auth = strict_auth
        self._on_ready = on_ready
        self._container: Any = None
        self._acceptor: Any = None
        self._injector = EventInjector()
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._consumers: dict[EntityStore, list[Any]] = {}
        self._connections: list[Any] = []
        self._timer: Any = None
        self._timer_due: int | None = None
        self._stopping = False
        self._pipe_lock = threading.Lock()
        self._pipe_closed = False

    # --- lifecycle and cross-thread calls -------------------------------------------------

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the reactor thread (thread-safe).

        Raises:
            RuntimeError: once the reactor has finished.
        """
        with self._pipe_lock:
            if self._pipe_closed:
                raise RuntimeError("the emulator's reactor has stopped")
            self._calls.put(fn)
            self._injector.trigger(ApplicationEvent(_CALL_EVENT))

    def release_resources(self) -> None:
        """Close the injector's pipe once the reactor has returned (proton never closes it)."""
        with self._pipe_lock:
            if self._pipe_closed:
                return
            self._pipe_closed = True
            for fd in self._injector.pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def on_reactor_init(self, event: Any) -> None:
        self._container = event.container
        self._container.selectable(self._injector)
        try:
            self._acceptor = self._container.listen(f"{self.host}:{self.port}")
            # proton keeps the bound socket private; port 0 needs the real port back.
            self.port = int(self._acceptor._selectable._delegate.getsockname()[1])
        except Exception as exc:
            self._injector.close()
            self._on_ready(exc)
            return
        self._on_ready(self.port)

    @_guarded
    def on_floworch_call(self, event: Any) -> None:
        while True:
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                return
            fn()

    def begin_shutdown(self) -> None:
        """Stop accepting, close every connection, then stop the reactor (reactor thread)."""
        if self._stopping:
            return
        self._stopping = True
        if self._acceptor is not None:
            self._acceptor.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in list(self._connections):
            if not conn.state & Endpoint.LOCAL_CLOSED:
                conn.close()
        self._injector.close()
        self._stop_when_idle(attempts=50)

    def _stop_when_idle(self, attempts: int) -> None:
        # Let close frames go out and transports close before the reactor stops, so no socket
        # is left open; give up after ~1 s on a peer that never answers.
        if self._connections and attempts > 0:
            self._container.schedule(0.02, _Callback(lambda: self._stop_when_idle(attempts - 1)))
            return
        for conn in self._connections:
            transport = conn.transport
            if transport is not None:
                transport.close_tail()
                transport.close_head()
        self._container.stop()

    # --- connections, sessions, SASL ------------------------------------------------------

    @_guarded
    def on_connection_init(self, event: Any) -> None:
        event.connection.fw = ConnectionContext()
        self._connections.append(event.connection)

    @_guarded
    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS PLAIN")
        sasl.allow_insecure_mechs = True

    @_guarded
    def on_connection_remote_open(self, event: Any) -> None:
        conn = event.connection
        if conn.state & Endpoint.LOCAL_UNINIT:
            conn.container = "floworch-servicebus-emulator"
            conn.open()

    @_guarded
    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @_guarded
    def on_session_remote_close(self, event: Any) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    @_guarded
    def on_connection_remote_close(self, event: Any) -> None:
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    @_guarded
    def on_transport_closed(self, event: Any) -> None:
        self._forget_connection(event.connection)

    @_guarded
    def on_connection_final(self, event: Any) -> None:
        self._forget_connection(event.connection)

    def _forget_connection(self, conn: Any) -> None:
        if conn is None:
            return
        if conn in self._connections:
            self._connections.remove(conn)
        for store, links in list(self._consumers.items()):
            kept = [link for link in links if link.connection != conn]
            if kept:
                self._consumers[store] = kept
            else:
                del self._consumers[store]

    # --- links ----------------------------------------------------------------------------

    @_guarded
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        if link.is_receiver:
            self._attach_incoming(link)
        else:
            self._attach_outgoing(link)

    def _accept_attach(self, link: Any, ctx: LinkContext) -> None:
        link.fw = ctx
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.open()

    def _refuse_attach(self, link: Any, condition: str, description: str) -> None:
        # AMQP 1.0 (2.6.3): answer the attach with a null terminus, then detach with the error.
        # The SDK relies on the null terminus: it then reports the detach error (not-found as
        # MessagingEntityNotFoundError) instead of a generic send failure.
        if link.is_receiver:
            link.target.type = Terminus.UNSPECIFIED
        else:
            link.source.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = Condition(condition, description)
        link.close()

    def _unauthorized(self, link: Any, node: str) -> bool:
        """With strict auth, refuse (and say True) a link to ``node`` that no accepted token of
        its connection covers."""
        if not self.strict_auth or node.lower() == "$cbs":
            return False
        entity = node[: -len("$management")] if node.lower().endswith("$management") else node
        authorized: set[str] = link.connection.fw.authorized
        if any(path_covers(granted, entity) for granted in authorized):
            return False
        self._refuse_attach(
            link,
            UNAUTHORIZED,
            f"no accepted shared access token of this connection covers {entity.strip('/')!r} "
            "(strict auth: put a token for it on $cbs first)",
        )
        return True

    def _attach_incoming(self, link: Any) -> None:
        node = node_of(link.remote_target.address)
        lowered = node.lower()
        if self._unauthorized(link, node):
            link.flow(INCOMING_WINDOW)
            return
        if lowered == "$cbs" or lowered.endswith("$management"):
            self._accept_attach(link, LinkContext(LinkRole.REQUEST, lowered))
        else:
            try:
                target = self.broker.send_target(node)
            except EntityNotFound as exc:
                self._refuse_attach(link, NOT_FOUND, str(exc))
                return
            # Advertised on the attach so the SDK refuses oversized messages before sending.
            link.max_message_size = self.max_message_size
            self._accept_attach(link, LinkContext(LinkRole.SEND, node, target=target))
        link.flow(INCOMING_WINDOW)

    def _attach_outgoing(self, link: Any) -> None:
        node = node_of(link.remote_source.address)
        lowered = node.lower()
        if self._unauthorized(link, node):
            return
        if lowered == "$cbs" or lowered.endswith("$management"):
            self._accept_attach(link, LinkContext(LinkRole.REPLY, lowered))
            link.connection.fw.reply_links[lowered] = link
            return
        if has_session_filter(link.remote_source):
            self._refuse_attach(link, NOT_IMPLEMENTED, "sessions are not supported")
            return
        try:
            store = self.broker.receive_store(node)
        except EntityNotFound as exc:
            self._refuse_attach(link, NOT_FOUND, str(exc))
            return
        peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
        self._accept_attach(
            link, LinkContext(LinkRole.CONSUME, node, store=store, peek_lock=peek_lock)
        )
        self._consumers.setdefault(store, []).append(link)

    @_guarded
    def on_link_remote_close(self, event: Any) -> None:
        self._detach(event.link)

    @_guarded
    def on_link_remote_detach(self, event: Any) -> None:
        self._detach(event.link)

    def _detach(self, link: Any) -> None:
        ctx: LinkContext | None = getattr(link, "fw", None)
        if ctx is not None and ctx.store is not None:
            links = self._consumers.get(ctx.store, [])
            if link in links:
                links.remove(link)
        if ctx is not None and ctx.role is LinkRole.REPLY:
            replies = link.connection.fw.reply_links
            if replies.get(ctx.node) == link:
                del replies[ctx.node]
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    @_guarded
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        ctx: LinkContext | None = getattr(link, "fw", None)
        if ctx is None or not link.is_sender:
            return
        if ctx.role is LinkRole.REPLY:
            self._flush_replies(link, ctx)
        elif ctx.role is LinkRole.CONSUME and ctx.store is not None:
            self._pump(ctx.store)
        if link.drain_mode:
            link.drained()

    # --- deliveries -----------------------------------------------------------------------

    @_guarded
    def on_delivery(self, event: Any) -> None:
        dlv = event.delivery
        link = dlv.link
        ctx: LinkContext | None = getattr(link, "fw", None)
        if link.is_sender:
            if ctx is not None and ctx.role is LinkRole.CONSUME and dlv.updated:
                self._settle_outgoing(dlv, ctx)
            return
        if dlv.aborted:
            dlv.settle()
            return
        if not dlv.readable or dlv.partial:
            return
        payload = link.recv(dlv.pending)
        link.advance()
        if link.credit < INCOMING_WINDOW // 2 and link.state & Endpoint.LOCAL_ACTIVE:
            link.flow(INCOMING_WINDOW - link.credit)
        if ctx is None:
            self._reject(dlv, INTERNAL_ERROR, "the link is not attached to an entity")
        elif ctx.role is LinkRole.REQUEST:
            self._request(link, dlv, ctx, payload)
        else:
            self._receive_sent(dlv, ctx, payload)

    def _reject(self, dlv: Any, condition: str, description: str) -> None:
        dlv.local.condition = error_condition(condition, description)
        dlv.update(Delivery.REJECTED)
        dlv.settle()

    def _receive_sent(self, dlv: Any, ctx: LinkContext, payload: bytes) -> None:
        if len(payload) > self.max_message_size:
            self._reject(
                dlv,
                MESSAGE_SIZE_EXCEEDED,
                f"the message is {len(payload)} bytes; the limit is {self.max_message_size}",
            )
            return
        try:
            parts = split_batch(payload) or [payload]
            messages = [decode_message(part) for part in parts]
        except AmqpDecodeError as exc:
            self._reject(dlv, DECODE_ERROR, str(exc))
            return
        assert ctx.target is not None
        self.broker.publish(ctx.target, messages)
        dlv.update(Delivery.ACCEPTED)
        dlv.settle()

    def _settle_outgoing(self, dlv: Any, ctx: LinkContext) -> None:
        """Apply a client's disposition (complete, abandon, defer, dead-letter, release)."""
        state = dlv.remote_state
        if state == Delivery.RECEIVED or state is None or ctx.store is None:
            return
        if not ctx.peek_lock:
            dlv.settle()
            return
        token: uuid.UUID | None = getattr(dlv, "fw_token", None)
        if token is None:
            dlv.settle()
            return
        store, now = ctx.store, self.broker.now_ms()
        try:
            if state == Delivery.ACCEPTED:
                store.complete(token, now)
            elif state == Delivery.REJECTED:
                cond = dlv.remote.condition
                info = dict(cond.info or {}) if cond is not None else {}
                reason = info.get(DEAD_LETTER_REASON)
                description = info.get(DEAD_LETTER_DESCRIPTION)
                store.dead_letter(
                    token,
                    now,
                    None if reason is None else str(reason),
                    None if description is None else str(description),
                )
            elif state == Delivery.MODIFIED:
                if dlv.remote.undeliverable:
                    store.defer(token, now)
                else:
                    store.abandon(token, now)
            elif state == Delivery.RELEASED:
                store.release(token, now)
        except LockLost as exc:
            if not dlv.settled:
                dlv.local.condition = error_condition(LOCK_LOST, str(exc))
                dlv.update(Delivery.REJECTED)
            dlv.settle()
            return
        if not dlv.settled:
            # The SDK waits for the service to echo the outcome it applied.
            dlv.update(state)
        dlv.settle()

    def _pump(self, store: EntityStore) -> None:
        """Deliver available messages to the store's receivers while they have credit."""
        links = self._consumers.get(store)
        if not links:
            return
        now = self.broker.now_ms()
        progress = True
        while progress and store.has_available():
            progress = False
            for link in links:
                if link.credit <= 0 or not link.state & Endpoint.LOCAL_ACTIVE:
                    continue
                ctx: LinkContext = link.fw
                taken = store.take(now, peek_lock=ctx.peek_lock)
                if taken is None:
                    return
                self._deliver(link, ctx, *taken)
                progress = True
        if len(links) > 1:
            links.append(links.pop(0))  # round-robin across receivers between pumps

    def _deliver(self, link: Any, ctx: LinkContext, stored: StoredMessage, count: int) -> None:
        payload = stored.message.encode(stored.annotations(locked=ctx.peek_lock), count)
        token = stored.lock_token if ctx.peek_lock else None
        # The SDK reads the lock token from the delivery tag: UUID(bytes_le=tag).
        dlv = link.delivery((token or uuid.uuid4()).bytes_le)
        link.send(payload)
        link.advance()
        if token is None:
            dlv.settle()
        else:
            # proton's Delivery.tag decodes the tag as UTF-8 text, so keep the token ourselves.
            dlv.fw_token = token

    # --- $cbs and $management -------------------------------------------------------------

    def _request(self, link: Any, dlv: Any, ctx: LinkContext, payload: bytes) -> None:
        request = Message()
        try:
            request.decode(payload)
        except Exception as exc:
            self._reject(dlv, DECODE_ERROR, f"undecodable request: {exc}")
            return
        dlv.update(Delivery.ACCEPTED)
        dlv.settle()
        if ctx.node == "$cbs":
            status, description = self._put_token(
                link.connection.fw, request, link.connection.remote_hostname
            )
            props = {"status-code": int32(status), "status-description": description}
            reply = Message(correlation_id=request.id, properties=props)
        else:
            node = ctx.node[: -len("$management")].rstrip("/")
            result: ManagementReply = handle_management_request(self.broker, node, request)
            props = {
                "statusCode": int32(result.status),
                "statusDescription": result.description,
            }
            if result.condition is not None:
                props["errorCondition"] = symbol(result.condition)
            reply = Message(body=result.body, correlation_id=request.id, properties=props)
        reply_node = node_of(request.reply_to).lower() or ctx.node
        if reply_node not in link.connection.fw.reply_links:
            reply_node = ctx.node
        conn_ctx: ConnectionContext = link.connection.fw
        conn_ctx.pending.setdefault(reply_node, []).append(bytes(reply.encode()))
        reply_link = conn_ctx.reply_links.get(reply_node)
        if reply_link is not None:
            self._flush_replies(reply_link, reply_link.fw)

    def _put_token(
        self, conn: ConnectionContext, request: Message, hostname: str | None
    ) -> tuple[int, str]:
        """The status of a ``$cbs`` request; an accepted token authorises its audience."""
        props: dict[Any, Any] = request.properties or {}
        audience = str(props.get("name") or "")
        if not self.strict_auth:
            conn.authorized.add(split_resource(audience)[1])
            return 202, "Accepted"  # without strict auth any token is accepted
        if str(props.get("operation", "")) != "put-token":
            return 400, f"unsupported $cbs operation {props.get('operation')!r}"
        body = request.body
        token = body.decode() if isinstance(body, bytes) else str(body or "")
        reason = check_sas_token(token, self.keys, audience=audience)
        audience_host = split_resource(audience)[0].rsplit(":", 1)[0]
        if reason is None and hostname and audience_host != hostname.casefold():
            reason = f"the audience {audience!r} is not this namespace ({hostname})"
        if reason is not None:
            _log.info("emulator: refused a token for %s: %s", audience, reason)
            return 401, f"Unauthorized: {reason}"
        conn.authorized.add(split_resource(audience)[1])
        return 202, "Accepted"

    def _flush_replies(self, link: Any, ctx: LinkContext) -> None:
        pending = link.connection.fw.pending.get(ctx.node)
        while pending and link.credit > 0:
            dlv = link.delivery(uuid.uuid4().bytes)
            link.send(pending.pop(0))
            link.advance()
            dlv.settle()

    # --- timers and the end of every event ------------------------------------------------

    def on_timer_task(self, event: Any) -> None:
        # Only this handler's own broker timer lands here (other tasks use _Callback).
        self._timer = None
        self._timer_due = None
        try:
            self.broker.run_timers()
        except Exception:
            _log.exception("emulator: broker timers failed")
        self._after_event()

    def _after_event(self) -> None:
        if self._stopping:
            return
        for store in self.broker.take_touched():
            self._pump(store)
        due = self.broker.next_deadline_ms()
        if due is None or (self._timer_due is not None and self._timer_due <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (due - self.broker.now_ms() + 1) / 1000)
        self._timer = self._container.schedule(delay, self)
        self._timer_due = due

    def _fail(self, event: Any, exc: Exception) -> None:
        """Close what the failing event belongs to, with an internal-error condition."""
        condition = Condition(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        try:
            endpoint = event.link or event.connection
            if endpoint is not None and not endpoint.state & Endpoint.LOCAL_CLOSED:
                endpoint.condition = condition
                endpoint.close()
        except Exception:
            _log.exception("emulator: could not close the failing endpoint")


class _Callback(Handler):
    """A one-shot reactor timer callback."""

    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self._fn = fn

    def on_timer_task(self, event: Any) -> None:
        try:
            self._fn()
        except Exception:
            _log.exception("emulator: timer callback failed")

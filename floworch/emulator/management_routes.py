"""Request routing of the management API, free of HTTP plumbing so it can be tested directly.

Paths: ``/<queue|topic>``, ``/<topic>/subscriptions/<sub>``, ``/<topic>/subscriptions/<sub>/rules/
<rule>`` (GET, PUT, DELETE) and the feeds ``/$Resources/queues``, ``/$Resources/topics``,
``/<topic>/subscriptions`` and ``.../rules`` (GET with ``$skip``/``$top``). A PUT with
``If-Match: *`` updates, without it creates. Errors are ``<Error><Code/><Detail/></Error>`` with
the status the SDK maps to its exceptions (401, 404 ResourceNotFoundError, 409
ResourceExistsError, 400).
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus

from floworch.emulator import atom
from floworch.emulator.entities import (
    EmulatorError,
    EntityAlreadyExists,
    EntityNotFound,
    ManagementBackend,
    QueueSettings,
    RuleSettings,
    SqlFilter,
    SubscriptionSettings,
    TopicSettings,
)
from floworch.emulator.sqlfilter import SqlFilterError, compile_sql_action, compile_sql_filter

ATOM_CONTENT_TYPE = "application/atom+xml;type=entry;charset=utf-8"
FEED_CONTENT_TYPE = "application/atom+xml;type=feed;charset=utf-8"
XML_CONTENT_TYPE = "application/xml; charset=utf-8"
API_VERSION = "2021-05"
MAX_PAGE = 100


@dataclass(frozen=True)
class RouteResult:
    """What to send back: status, body and its content type."""

    status: int
    body: bytes
    content_type: str = ATOM_CONTENT_TYPE


class _BadRequest(Exception):
    pass


class ManagementRoutes:
    """Turns management requests into backend calls and ATOM responses."""

    def __init__(self, backend: ManagementBackend) -> None:
        self._backend = backend

    def error(self, status: int, detail: str) -> RouteResult:
        """An error response in the service's format."""
        return RouteResult(int(status), atom.render_error(int(status), detail), XML_CONTENT_TYPE)

    def handle(
        self, method: str, raw_path: str, body: bytes, *, host: str, if_match: str | None
    ) -> RouteResult:
        """Serve one request; never raises for bad input (it becomes a 4xx response)."""
        parsed = urllib.parse.urlsplit(raw_path)
        query = urllib.parse.parse_qs(parsed.query)
        segments = [urllib.parse.unquote(s) for s in parsed.path.strip("/").split("/") if s]
        base = f"https://{host}"
        try:
            return self._route(method, segments, query, body, base, host, if_match is not None)
        except EntityNotFound as exc:
            return self.error(HTTPStatus.NOT_FOUND, str(exc))
        except EntityAlreadyExists as exc:
            return self.error(HTTPStatus.CONFLICT, str(exc))
        except (atom.AtomFormatError, SqlFilterError, _BadRequest) as exc:
            return self.error(HTTPStatus.BAD_REQUEST, str(exc))
        except EmulatorError as exc:
            return self.error(HTTPStatus.BAD_REQUEST, str(exc))

    def _route(
        self,
        method: str,
        segs: list[str],
        query: dict[str, list[str]],
        body: bytes,
        base: str,
        host: str,
        is_update: bool,
    ) -> RouteResult:
        lowered = [s.lower() for s in segs]
        if not segs:
            raise EntityNotFound("entity", "/")
        if lowered[0] == "$resources" and len(segs) == 2 and method == "GET":
            if lowered[1] == "queues":
                return self._queue_feed(query, base, host)
            if lowered[1] == "topics":
                return self._topic_feed(query, base, host)
            raise EntityNotFound("entity", "/".join(segs))
        if len(segs) >= 2 and lowered[1] == "subscriptions":
            topic = segs[0]
            if len(segs) == 2 and method == "GET":
                return self._subscription_feed(topic, query, base, host)
            if len(segs) == 3:
                return self._subscription(method, topic, segs[2], body, base, host, is_update)
            if len(segs) == 4 and lowered[3] == "rules" and method == "GET":
                return self._rule_feed(topic, segs[2], query, base)
            if len(segs) == 5 and lowered[3] == "rules":
                return self._rule(method, topic, segs[2], segs[4], body, base, is_update)
            raise EntityNotFound("entity", "/".join(segs))
        return self._entity(method, "/".join(segs), body, base, host, is_update)

    # -- queues and topics share one name space and one path --

    def _entity(
        self, method: str, name: str, body: bytes, base: str, host: str, is_update: bool
    ) -> RouteResult:
        backend = self._backend
        if method == "GET":
            try:
                return self._ok(self._queue_entry(backend.get_queue(name), base, host))
            except EntityNotFound:
                pass
            try:
                return self._ok(self._topic_entry(backend.get_topic(name), base, host))
            except EntityNotFound:
                raise EntityNotFound("queue or topic", name) from None
        if method == "DELETE":
            try:
                backend.delete_queue(name)
            except EntityNotFound:
                try:
                    backend.delete_topic(name)
                except EntityNotFound:
                    raise EntityNotFound("queue or topic", name) from None
            return RouteResult(HTTPStatus.OK, b"", XML_CONTENT_TYPE)
        if method != "PUT":
            raise _BadRequest(f"method {method} is not supported on /{name}")
        if b"TopicDescription" in body and b"QueueDescription" not in body:
            topic = atom.parse_topic(body, name)
            if is_update:
                # Keep the name as first created; the SDK sends whatever case the caller used.
                topic = replace(topic, name=backend.get_topic(name).name)
                return self._ok(self._topic_entry(backend.update_topic(topic), base, host))
            self._refuse_if_exists(backend.get_queue, name, "queue")
            created = backend.create_topic(topic)
            return self._ok(self._topic_entry(created, base, host), HTTPStatus.CREATED)
        queue = atom.parse_queue(body, name)
        if is_update:
            queue = replace(queue, name=backend.get_queue(name).name)
            return self._ok(self._queue_entry(backend.update_queue(queue), base, host))
        self._refuse_if_exists(backend.get_topic, name, "topic")
        created_queue = backend.create_queue(queue)
        return self._ok(self._queue_entry(created_queue, base, host), HTTPStatus.CREATED)

    @staticmethod
    def _refuse_if_exists(getter: Callable[[str], object], name: str, kind: str) -> None:
        try:
            getter(name)
        except EntityNotFound:
            return
        raise EntityAlreadyExists(kind, name)

    def _queue_entry(self, queue: QueueSettings, base: str, host: str) -> ET.Element:
        info = self._backend.get_queue_runtime_info(queue.name)
        url = f"{base}/{urllib.parse.quote(queue.name)}?api-version={API_VERSION}"
        return atom.queue_entry(queue, info, self_url=url, namespace_host=host)

    def _topic_entry(self, topic: TopicSettings, base: str, host: str) -> ET.Element:
        info = self._backend.get_topic_runtime_info(topic.name)
        url = f"{base}/{urllib.parse.quote(topic.name)}?api-version={API_VERSION}"
        return atom.topic_entry(topic, info, self_url=url, namespace_host=host)

    # -- subscriptions --

    def _subscription(
        self,
        method: str,
        topic: str,
        name: str,
        body: bytes,
        base: str,
        host: str,
        is_update: bool,
    ) -> RouteResult:
        backend = self._backend
        if method == "GET":
            return self._ok(self._sub_entry(backend.get_subscription(topic, name), base, host))
        if method == "DELETE":
            backend.delete_subscription(topic, name)
            return RouteResult(HTTPStatus.OK, b"", XML_CONTENT_TYPE)
        if method != "PUT":
            raise _BadRequest(f"method {method} is not supported on subscriptions")
        settings = atom.parse_subscription(body, topic, name)
        if is_update:
            current = backend.get_subscription(topic, name)
            settings = replace(settings, topic_name=current.topic_name, name=current.name)
            return self._ok(self._sub_entry(backend.update_subscription(settings), base, host))
        created = backend.create_subscription(settings)
        return self._ok(self._sub_entry(created, base, host), HTTPStatus.CREATED)

    def _sub_entry(self, sub: SubscriptionSettings, base: str, host: str) -> ET.Element:
        info = self._backend.get_subscription_runtime_info(sub.topic_name, sub.name)
        path = f"{sub.topic_name}/subscriptions/{sub.name}"
        url = f"{base}/{urllib.parse.quote(path)}?api-version={API_VERSION}"
        return atom.subscription_entry(sub, info, self_url=url, namespace_host=host)

    # -- rules --

    def _rule(
        self,
        method: str,
        topic: str,
        sub: str,
        name: str,
        body: bytes,
        base: str,
        is_update: bool,
    ) -> RouteResult:
        backend = self._backend
        if method == "GET":
            return self._ok(self._rule_entry(backend.get_rule(topic, sub, name), base))
        if method == "DELETE":
            backend.delete_rule(topic, sub, name)
            return RouteResult(HTTPStatus.OK, b"", XML_CONTENT_TYPE)
        if method != "PUT":
            raise _BadRequest(f"method {method} is not supported on rules")
        rule = atom.parse_rule(body, topic, sub, name)
        # Reject bad SQL here, with its column, rather than when the first message arrives.
        if isinstance(rule.filter, SqlFilter):
            compile_sql_filter(rule.filter.sql_expression)
        if rule.action is not None:
            compile_sql_action(rule.action)
        if is_update:
            current = backend.get_rule(topic, sub, name)
            rule = replace(
                rule,
                topic_name=current.topic_name,
                subscription_name=current.subscription_name,
                name=current.name,
            )
            return self._ok(self._rule_entry(backend.update_rule(rule), base))
        return self._ok(self._rule_entry(backend.create_rule(rule), base), HTTPStatus.CREATED)

    def _rule_entry(self, rule: RuleSettings, base: str) -> ET.Element:
        path = f"{rule.topic_name}/subscriptions/{rule.subscription_name}/rules/{rule.name}"
        url = f"{base}/{urllib.parse.quote(path)}?api-version={API_VERSION}"
        return atom.rule_entry(rule, self_url=url)

    # -- feeds --

    @staticmethod
    def _page(query: dict[str, list[str]]) -> tuple[int, int]:
        try:
            skip = int(query.get("$skip", ["0"])[0])
            top = int(query.get("$top", [str(MAX_PAGE)])[0])
        except ValueError as exc:
            raise _BadRequest("$skip and $top must be integers") from exc
        if skip < 0 or top < 1:
            raise _BadRequest("$skip must be >= 0 and $top >= 1")
        return skip, min(top, MAX_PAGE)

    def _feed(
        self,
        items: Sequence[object],
        render: Callable[[object], ET.Element],
        query: dict[str, list[str]],
        url: str,
        title: str,
    ) -> RouteResult:
        skip, top = self._page(query)
        page = items[skip : skip + top]
        self_url = f"{url}?$skip={skip}&$top={top}&api-version={API_VERSION}"
        next_url = None
        if skip + top < len(items):
            next_url = f"{url}?$skip={skip + top}&$top={top}&api-version={API_VERSION}"
        entries = [render(item) for item in page]
        return RouteResult(
            HTTPStatus.OK,
            atom.render_feed(entries, title=title, self_url=self_url, next_url=next_url),
            FEED_CONTENT_TYPE,
        )

    def _queue_feed(self, query: dict[str, list[str]], base: str, host: str) -> RouteResult:
        return self._feed(
            self._backend.list_queues(),
            lambda q: self._queue_entry(q, base, host),  # type: ignore[arg-type]
            query,
            f"{base}/$Resources/queues",
            "Queues",
        )

    def _topic_feed(self, query: dict[str, list[str]], base: str, host: str) -> RouteResult:
        return self._feed(
            self._backend.list_topics(),
            lambda t: self._topic_entry(t, base, host),  # type: ignore[arg-type]
            query,
            f"{base}/$Resources/topics",
            "Topics",
        )

    def _subscription_feed(
        self, topic: str, query: dict[str, list[str]], base: str, host: str
    ) -> RouteResult:
        return self._feed(
            self._backend.list_subscriptions(topic),
            lambda s: self._sub_entry(s, base, host),  # type: ignore[arg-type]
            query,
            f"{base}/{urllib.parse.quote(topic)}/subscriptions",
            "Subscriptions",
        )

    def _rule_feed(
        self, topic: str, sub: str, query: dict[str, list[str]], base: str
    ) -> RouteResult:
        return self._feed(
            self._backend.list_rules(topic, sub),
            lambda r: self._rule_entry(r, base),  # type: ignore[arg-type]
            query,
            f"{base}/{urllib.parse.quote(topic)}/subscriptions/{urllib.parse.quote(sub)}/rules",
            "Rules",
        )

    @staticmethod
    def _ok(entry: ET.Element, status: int = HTTPStatus.OK) -> RouteResult:
        return RouteResult(int(status), atom.render_entry(entry))

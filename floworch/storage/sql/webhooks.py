"""Statement builders for the webhook log: accepted deliveries and rejections."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Delete, Insert, Select, delete, func, insert, select

from floworch.storage.api_records import WebhookRejection
from floworch.storage.sql.api_schema import webhook_deliveries, webhook_rejections


def insert_rejection(rejection: WebhookRejection) -> Insert:
    """Appends one rejection (its id is assigned by the database)."""
    return insert(webhook_rejections).values(
        slug=rejection.slug,
        reason=str(rejection.reason),
        detail=rejection.detail,
        at=rejection.at,
        flow_id=rejection.flow_id,
        trigger_key=rejection.trigger_key,
        delivery_id=rejection.delivery_id,
    )


def select_deliveries(flow_id: str | None, limit: int) -> Select[Any]:
    """Accepted deliveries, newest first."""
    stmt = select(webhook_deliveries)
    if flow_id is not None:
        stmt = stmt.where(webhook_deliveries.c.flow_id == flow_id)
    return stmt.order_by(
        webhook_deliveries.c.received_at.desc(), webhook_deliveries.c.delivery_id.desc()
    ).limit(limit)


def select_rejections(flow_id: str | None, slug: str | None, limit: int) -> Select[Any]:
    """Rejections, newest first."""
    stmt = select(webhook_rejections)
    if flow_id is not None:
        stmt = stmt.where(webhook_rejections.c.flow_id == flow_id)
    if slug is not None:
        stmt = stmt.where(webhook_rejections.c.slug == slug)
    return stmt.order_by(webhook_rejections.c.rejection_id.desc()).limit(limit)


def count_rejections(since: datetime) -> Select[Any]:
    """``(reason, count)`` of rejections since a time."""
    return (
        select(webhook_rejections.c.reason, func.count())
        .where(webhook_rejections.c.at >= since)
        .group_by(webhook_rejections.c.reason)
    )


def delete_old_deliveries(before: datetime) -> Delete:
    """Deliveries received before a time."""
    return delete(webhook_deliveries).where(webhook_deliveries.c.received_at < before)


def delete_old_rejections(before: datetime) -> Delete:
    """Rejections logged before a time."""
    return delete(webhook_rejections).where(webhook_rejections.c.at < before)

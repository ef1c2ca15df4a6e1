"""Azure SDK errors (``azure.core.exceptions``) translated into the topology manager's errors,
each naming the operation, the entity and the namespace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from floworch.runtime.servicebus.topology.errors import (
    EntityExistsError,
    EntityNotFoundError,
    EntityOperationError,
    TopologyAccessError,
)


def _detail(exc: AzureError) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:300]


@contextmanager
def translated_errors(
    *, operation: str, kind: str, path: str, target: str, access_hint: str
) -> Iterator[None]:
    """Run the SDK call in the ``with`` block; its errors leave as floworch errors.

    Args:
        operation: ``"create"``, ``"update"``, ``"list"``, ``"delete"``, ``"read"``.
        kind: the entity kind (plural, with an empty ``path``, for listings).
        path: the entity path, or ``""`` for a listing.
        target: the namespace.
        access_hint: what rights the credential needs (said when access is refused).
    """
    where = f"{kind} {path!r} in {target}" if path else f"{kind} in {target}"
    info = {"operation": operation, "kind": kind, "path": path, "target": target}
    try:
        yield
    except ClientAuthenticationError as exc:
        raise TopologyAccessError(
            f"cannot {operation} {where}: the credential was refused ({_detail(exc)}); "
            f"{access_hint}",
            **info,
        ) from exc
    except HttpResponseError as exc:
        status = exc.status_code
        if isinstance(exc, ResourceExistsError) or status == 409:
            raise EntityExistsError(
                f"cannot {operation} {where}: it already exists ({_detail(exc)})", **info
            ) from exc
        if isinstance(exc, ResourceNotFoundError) or status == 404:
            raise EntityNotFoundError(
                f"cannot {operation} {where}: it or its parent does not exist ({_detail(exc)})",
                **info,
            ) from exc
        if status in (401, 403):
            raise TopologyAccessError(
                f"cannot {operation} {where}: access denied (HTTP {status}: {_detail(exc)}); "
                f"{access_hint}",
                **info,
            ) from exc
        raise EntityOperationError(
            f"cannot {operation} {where}: Service Bus answered HTTP {status}: {_detail(exc)}",
            **info,
        ) from exc
    except ServiceRequestError as exc:
        raise EntityOperationError(
            f"cannot {operation} {where}: the endpoint could not be reached ({_detail(exc)}); "
            "check the address, the network and TLS trust (--ca-file for a local emulator)",
            **info,
        ) from exc
    except AzureError as exc:
        raise EntityOperationError(f"cannot {operation} {where}: {_detail(exc)}", **info) from exc

"""Who may call the API: bearer tokens or App Service authentication, two roles, and the rule
that keeps mutations out of reach of cross-site form posts.

- ``reader`` may read everything; ``operator`` may also trigger, cancel, retry, rerun, signal,
  enable, disable and steer schedules.
- Tokens are compared in constant time (every configured token is compared, always).
- Behind Azure App Service / Functions authentication the platform sets
  ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON with the caller's claims) and strips any copy a client
  sends; its role claims map onto the two roles. Only enable this mode behind that platform.
- A mutation (any method but GET/HEAD/OPTIONS) must carry a JSON content type, an
  ``Authorization`` header or an ``X-Floworch-Request`` header: a cross-site HTML form can set
  none of them, and a cross-site script cannot without a CORS preflight, which this API never
  grants. A request whose ``Origin`` names another host is refused.
- With auth off (only on loopback, or with ``--insecure-no-auth``) every caller is an operator.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

from floworch.api.problems import ProblemError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-Floworch-Request"
PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"


class Role(enum.IntEnum):
    """What a caller may do; a higher role includes the lower ones."""

    READER = 1
    OPERATOR = 2


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: a name for logs (never a token) and a role."""

    name: str
    role: Role


class AuthMode(enum.StrEnum):
    """How callers authenticate."""

    NONE = "none"
    TOKEN = "token"
    APP_SERVICE = "appservice"


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """The API's authentication setting (hosts build it from the environment).

    Attributes:
        mode: ``none`` (everyone is an operator: loopback only), ``token`` or ``appservice``.
        operator_tokens: bearer tokens of operators (``FLOWORCH_API_TOKEN``).
        read_tokens: bearer tokens of read-only callers (``FLOWORCH_API_READ_TOKEN``).
        operator_roles / reader_roles: App Service role claims mapped onto the two roles.
        appservice_default_role: the role of an authenticated principal with no mapped role
            (None: refused with 403).
    """

    mode: AuthMode
    operator_tokens: tuple[str, ...] = ()
    read_tokens: tuple[str, ...] = ()
    operator_roles: frozenset[str] = field(default_factory=lambda: frozenset({"floworch.operator"}))
    reader_roles: frozenset[str] = field(default_factory=lambda: frozenset({"floworch.reader"}))
    appservice_default_role: Role | None = None

    def __post_init__(self) -> None:
        if self.mode == AuthMode.TOKEN and not (self.operator_tokens or self.read_tokens):
            raise ValueError("token auth needs at least one token")
        for token in (*self.operator_tokens, *self.read_tokens):
            if not token or token != token.strip():
                raise ValueError("an API token must be non-empty, without surrounding spaces")

    @classmethod
    def none(cls) -> AuthConfig:
        """No authentication: every caller is an operator (for loopback hosts)."""
        return cls(mode=AuthMode.NONE)

    @classmethod
    def tokens(cls, operator: str | None = None, read: str | None = None) -> AuthConfig:
        """Bearer tokens: an operator token and/or a read-only token."""
        return cls(
            mode=AuthMode.TOKEN,
            operator_tokens=(operator,) if operator else (),
            read_tokens=(read,) if read else (),
        )

    def __repr__(self) -> str:  # never print tokens
        return (
            f"AuthConfig(mode={self.mode.value!r}, operator_tokens={len(self.operator_tokens)}, "
            f"read_tokens={len(self.read_tokens)})"
        )


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="floworch"'})


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _matches(token: str, candidates: tuple[str, ...]) -> bool:
    found = False
    given = token.encode()
    for candidate in candidates:
        # Compare against every candidate so timing does not tell which one (or none) matched.
        found |= hmac.compare_digest(given, candidate.encode())
    return found


def _principal_roles(raw: str) -> tuple[str, set[str]]:
    try:
        data = json.loads(base64.b64decode(raw, validate=False))
    except (binascii.Error, ValueError) as exc:
        raise _unauthorized(f"the {PRINCIPAL_HEADER} header is not base64 JSON") from exc
    if not isinstance(data, dict):
        raise _unauthorized(f"the {PRINCIPAL_HEADER} header is not a principal object")
    role_type = data.get("role_typ") or "roles"
    name_type = data.get("name_typ") or "name"
    roles: set[str] = set()
    name = "principal"
    for claim in data.get("claims") or []:
        if not isinstance(claim, dict):
            continue
        typ, val = claim.get("typ"), claim.get("val")
        if not isinstance(val, str):
            continue
        if typ in (role_type, "roles", "role"):
            roles.add(val)
        elif typ == name_type:
            name = val
    return name, roles


def authenticate(config: AuthConfig, headers: Mapping[str, str]) -> Caller:
    """Who is calling, per the configured mode.

    Raises:
        ProblemError: 401 without valid credentials, 403 for a principal with no mapped role.
    """
    if config.mode == AuthMode.NONE:
        return Caller("anonymous (auth off)", Role.OPERATOR)
    if config.mode == AuthMode.TOKEN:
        token = _bearer(headers)
        if token is None:
            raise _unauthorized(
                "this API needs a bearer token: send 'Authorization: Bearer <token>'"
            )
        if _matches(token, config.operator_tokens):
            return Caller("operator token", Role.OPERATOR)
        if _matches(token, config.read_tokens):
            return Caller("read-only token", Role.READER)
        raise _unauthorized("the bearer token is not valid")
    raw = headers.get(PRINCIPAL_HEADER.lower())
    if not raw:
        raise _unauthorized(
            f"no {PRINCIPAL_HEADER} header: sign in through the App Service authentication"
        )
    name, roles = _principal_roles(raw)
    if roles & config.operator_roles:
        return Caller(name, Role.OPERATOR)
    if roles & config.reader_roles:
        return Caller(name, Role.READER)
    if config.appservice_default_role is not None:
        return Caller(name, config.appservice_default_role)
    raise ProblemError(
        403,
        "your principal has no floworch role: give it "
        + " or ".join(sorted(config.operator_roles | config.reader_roles)),
    )


def check_cross_site(request: Request) -> None:
    """Refuses a mutation a browser could send cross-site (see the module docstring)."""
    if request.method in SAFE_METHODS:
        return
    headers = request.headers
    origin = headers.get("origin")
    if origin is not None and origin != "null":
        host = headers.get("host", "")
        if urlsplit(origin).netloc.lower() != host.lower():
            raise ProblemError(
                403, f"cross-origin request from {origin!r} refused", kind="cross-origin"
            )
    elif origin == "null":
        raise ProblemError(403, "requests from an opaque origin are refused", kind="cross-origin")
    if headers.get("sec-fetch-site") == "cross-site":
        raise ProblemError(403, "cross-site request refused", kind="cross-origin")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if (
        content_type == "application/json"
        or content_type.endswith("+json")
        or "authorization" in headers
        or CSRF_HEADER.lower() in headers
    ):
        return
    raise ProblemError(
        403,
        f"a request that changes something must send 'Content-Type: application/json' or an "
        f"'{CSRF_HEADER}: 1' header (this keeps cross-site form posts out)",
        kind="csrf",
    )


def require(request: Request, role: Role) -> Caller:
    """Authenticates the request and checks its role (and the cross-site rule for mutations)."""
    from floworch.api.context import context_of

    caller = authenticate(context_of(request).auth, request.headers)
    if caller.role < role:
        raise ProblemError(
            403, f"{caller.name} may only read; this needs the operator role", kind="forbidden"
        )
    check_cross_site(request)
    return caller


def reader(request: Request) -> Caller:
    """FastAPI dependency: any authenticated caller."""
    return require(request, Role.READER)


def operator(request: Request) -> Caller:
    """FastAPI dependency: an operator."""
    return require(request, Role.OPERATOR)


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    import ipaddress

    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

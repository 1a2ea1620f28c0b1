"""API keys: made, checked and revoked here. Every route needs one (when ``API_AUTH_REQUIRED``) unless
its view is declared ``@public``, which also gives it ``security: []`` in the OpenAPI spec.

A key is 256 random bits, shown once when made; the database keeps its SHA-256 only. (A slow password
hash buys nothing for keys this long and would cost every request.)
"""

import hashlib
import secrets
from collections.abc import Callable

from apispec import BasePlugin
from flask import Flask, current_app, g, request
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from ..domain.clock import utcnow
from ..exceptions import ApiKeyError
from ..persistence.database import once_more_if_disconnected, single_read, write_transaction
from ..persistence.models import ApiKey

KEY_PREFIX = "rsk_"
UNAUTHORIZED = "A valid API key is required: Authorization: Bearer <key>"


def public(view: Callable) -> Callable:
    """Declare that ``view`` needs no API key (and say so in the OpenAPI spec)."""
    view = Blueprint.doc(security=[])(view)
    view.is_public = True
    return view


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


NAME_MAX_LENGTH = ApiKey.__table__.c.name.type.length


def _name_problem(name: str) -> str | None:
    """What keeps ``name`` from telling a key apart (in listings, to revoke it by), or None."""
    if not name.strip():
        return "a key's name cannot be empty"
    if not name.isprintable():
        return "a key's name is printable text"
    if len(name) > NAME_MAX_LENGTH:
        return f"a key's name is at most {NAME_MAX_LENGTH} characters"
    return None


def create_api_key(name: str) -> str:
    """Make a key called ``name`` and return it: the only time the key itself is seen."""
    problem = _name_problem(name)
    if problem:
        raise ApiKeyError(problem)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with write_transaction() as session:
        if session.execute(select(ApiKey.pk).filter_by(name=name)).first() is not None:
            raise ApiKeyError(f"a key named {name!r} exists already")
        session.add(ApiKey(name=name, prefix=key[:12], key_hash=_digest(key)))
    return key


def list_api_keys() -> list:
    with single_read() as connection:
        return connection.execute(select(ApiKey.__table__).order_by(ApiKey.created_at)).all()


def revoke_api_key(name: str) -> None:
    with write_transaction() as session:
        key = session.execute(select(ApiKey).filter_by(name=name)).scalar_one_or_none()
        if key is None:
            raise ApiKeyError(f"no key named {name!r}")
        if key.revoked_at is None:
            key.revoked_at = utcnow()


@once_more_if_disconnected
def _is_current(digest: str) -> bool:
    """Whether ``digest`` is that of a key made here and not revoked: one statement, outside any
    transaction."""
    query = select(ApiKey.pk).filter_by(key_hash=digest, revoked_at=None)
    with single_read() as connection:
        return connection.execute(query).first() is not None


def require_api_key():
    """Refuse, with 401, a request without a valid key, unless keys are off or its view is public.

    OPTIONS needs none: a browser's CORS preflight cannot carry the key, and it reads no data.
    """
    if not current_app.config["API_AUTH_REQUIRED"] or request.method == "OPTIONS":
        return
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "is_public", False):
        return
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    digest = _digest(key) if key else None
    if scheme.lower() != "bearer" or digest is None or not _is_current(digest):
        abort(
            401,
            message=UNAUTHORIZED,
            headers={"WWW-Authenticate": 'Bearer realm="recordings-service"'},
        )
    g.api_key_digest = digest


def api_key_digest() -> str:
    """Who made this request: its API key (as stored, a digest), or "" when keys are off."""
    return g.get("api_key_digest", "")


class _UnauthorizedResponses(BasePlugin):
    """Documents the 401 on every operation that needs a key (all but the ``@public`` ones)."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for operation in (operations or {}).values():
            if operation.get("security") != []:
                operation.setdefault("responses", {})["401"] = "UNAUTHORIZED"


def init_app(app: Flask, spec) -> None:
    """Check keys before every request, and describe them in the OpenAPI spec: required everywhere
    but where a view is ``@public``. Before the blueprints are registered, so their paths are seen.

    With ``API_AUTH_REQUIRED`` off the spec asks for no key, as the service asks for none."""
    app.before_request(require_api_key)
    if not app.config["API_AUTH_REQUIRED"]:
        return
    if "bearerAuth" not in spec.components.security_schemes:
        spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.options["security"] = [{"bearerAuth": []}]
    if not any(isinstance(plugin, _UnauthorizedResponses) for plugin in spec.plugins):
        plugin = _UnauthorizedResponses()
        plugin.init_spec(spec)
        spec.plugins.append(plugin)

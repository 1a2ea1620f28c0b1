"""API keys: made, checked and revoked here; ``require_api_key`` guards every endpoint that needs one.

A key is 256 random bits, shown once when made; the database keeps its SHA-256 only. (A slow password
hash buys nothing for keys this long and would cost every request.)
"""

import hashlib
import secrets

from flask import current_app, request
from flask_smorest import abort
from sqlalchemy import select

from .extensions import db
from .models import ApiKey
from .timeutil import utcnow

KEY_PREFIX = "rsk_"
# Africa's Talking cannot send a key (the callback has its token); probes must work without one.
PUBLIC_ENDPOINTS = {"callbacks.receive_callback", "ops.healthz", "ops.readyz"}


class ApiKeyError(Exception):
    """A key cannot be made or revoked as asked."""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(name: str) -> str:
    """Make a key called ``name`` and return it: the only time the key itself is seen."""
    if db.session.execute(select(ApiKey.pk).filter_by(name=name)).first() is not None:
        raise ApiKeyError(f"a key named {name!r} exists already")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiKey(name=name, prefix=key[:12], key_hash=_digest(key)))
    db.session.commit()
    return key


def list_api_keys() -> list[ApiKey]:
    return list(db.session.execute(select(ApiKey).order_by(ApiKey.created_at)).scalars())


def revoke_api_key(name: str) -> None:
    key = db.session.execute(select(ApiKey).filter_by(name=name)).scalar_one_or_none()
    if key is None:
        raise ApiKeyError(f"no key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.session.commit()


def is_valid_api_key(key: str) -> bool:
    query = select(ApiKey.pk).filter_by(key_hash=_digest(key), revoked_at=None)
    return db.session.execute(query).first() is not None


def require_api_key():
    """Refuse, with 401, a request without a valid key, when keys are required (API_AUTH_REQUIRED)."""
    if not current_app.config["API_AUTH_REQUIRED"] or request.endpoint in PUBLIC_ENDPOINTS:
        return
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip() or not is_valid_api_key(key.strip()):
        abort(
            401,
            message="A valid API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": 'Bearer realm="recordings-service"'},
        )


def document_security(spec) -> None:
    """Describe the keys in the OpenAPI spec: required everywhere but on the public endpoints."""
    if "bearerAuth" not in spec.components.security_schemes:
        spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.options["security"] = [{"bearerAuth": []}]

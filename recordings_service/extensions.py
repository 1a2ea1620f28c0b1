"""Flask extensions, created unbound here and bound to the app in ``create_app``."""

import flask_smorest
from apispec import BasePlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask_cors import CORS
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from .errors import http_error
from .schemas import ErrorSchema

# Stable constraint names, so Alembic can find and alter them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SchemaExtras(BasePlugin):
    """Adds a schema's ``Meta.openapi`` (a dict) to its OpenAPI form: what marshmallow cannot say,
    such as the type of the fields a schema takes without naming them (``additionalProperties``)."""

    def schema_helper(self, name, definition, schema=None, **kwargs):
        if schema is None:
            return None
        return dict(getattr(getattr(resolve_schema_cls(schema), "Meta", None), "openapi", {}))


_UNTYPED_NULL = {"type": "object", "nullable": True}


def nullable_reference(converter, field, ret: dict, **kwargs) -> dict:
    """Write a nullable nested schema as ``allOf`` its reference with ``nullable``, which generated
    clients read as that schema or null, instead of apispec's ``anyOf`` an untyped object or it."""
    branches = ret.get("anyOf", [])
    if not field.allow_none or _UNTYPED_NULL not in branches:
        return {}
    del ret["anyOf"]  # the results are merged into ``ret``: a key can only be taken out of it here
    return {"allOf": [branch for branch in branches if branch != _UNTYPED_NULL], "nullable": True}


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering errors in the service's ``{"detail": ...}`` shape."""

    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *args, **kwargs):
        super().init_app(app, *args, **kwargs)
        self.ma_plugin.converter.add_attribute_function(nullable_reference)  # each app has its own spec

    def handle_http_exception(self, error):
        return http_error(error)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
api = Api(spec_kwargs={"extra_plugins": [SchemaExtras()]})
# Browsers on the origins in CORS_ORIGINS may call the API (/api/*) with a key; a preflight needs none.
cors = CORS()
CORS_OPTIONS = {
    # Only the methods some route takes (flask-cors would offer PUT and PATCH too).
    "methods": ["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
    "allow_headers": [
        "Authorization",
        "Content-Type",
        "Idempotency-Key",
        "If-None-Match",
        "If-Range",
        "Prefer",
        "Range",
        "X-Request-ID",
    ],
    "expose_headers": [
        "Accept-Ranges",
        "Content-Length",
        "Content-Range",
        "ETag",
        "Last-Modified",
        "Location",
        "Preference-Applied",
        "Retry-After",
        "X-Request-ID",
    ],
    "max_age": 600,
}

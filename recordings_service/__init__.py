"""recordings-service: the system of record for recordings of Africa's Talking calls."""

import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, config_from_env

from . import cli
from .errors import register_error_handlers
from .extensions import api, db, migrate
from .persistence.database import configure_engine
from .recordings import public
from .web import auth, observability, waiting


def create_app(config_class: type[Config] | None = None) -> Flask:
    """Build the app with ``config_class`` (by default the one ``RECORDINGS_ENV`` names)."""
    config_class = config_class or config_from_env()
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(config_class)
    config_class.check(app.config)
    app.json.sort_keys = False  # keep the contract's field order
    if app.config["TRUSTED_PROXY_COUNT"]:
        # The real client address (for VOICE_CALLBACK_ALLOWED_NETWORKS) is in X-Forwarded-For.
        count = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    observability.init_app(app)  # first, so that every answer (a 401 too) carries a request id
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    auth.init_app(app, api.spec)
    cli.init_app(app)
    return app


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"), render_as_batch=True
    )
    api.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    public.init_app(app)
    waiting.init_app(app)


def register_blueprints(app: Flask) -> None:
    from .web import callbacks, ops, recordings

    api.register_blueprint(recordings.blp)
    api.register_blueprint(callbacks.blp)
    api.register_blueprint(ops.blp)

"""recordings-service: the system of record for recordings of Africa's Talking calls.

The service's modules are imported by ``create_app``, not here: gunicorn's master imports this package
for its logging (``recordings_service.logs``) before it forks the workers, and gevent must patch the
standard library in each worker before boto3, urllib3 or psycopg are imported.
"""

import os

from flask import Flask

from config import Config, config_from_env


def create_app(config_class: type[Config] | None = None) -> Flask:
    """Build the app with ``config_class`` (by default the one ``RECORDINGS_ENV`` names)."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from . import cli
    from .errors import register_error_handlers
    from .extensions import api
    from .web import auth, bodies, observability

    config_class = config_class or config_from_env()
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(config_class.settings())  # the environment, read now
    app.config.from_object(config_class)  # what the class itself sets (the tests' settings) on top
    config_class.check(app.config)
    app.json.sort_keys = False  # keep the documented field order
    if app.config["TRUSTED_PROXY_COUNT"]:
        # The real client address (for VOICE_CALLBACK_ALLOWED_NETWORKS) is in X-Forwarded-For.
        count = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    observability.init_app(app)  # first, so that every answer (a 401 too) carries a request id
    bodies.init_app(app)
    register_extensions(app)
    auth.init_app(app, api.spec)
    register_blueprints(app)
    register_error_handlers(app)
    cli.init_app(app)
    return app


def register_extensions(app: Flask) -> None:
    from .extensions import CORS_OPTIONS, api, cors, db, migrate
    from .integrations.africastalking import voice_api
    from .integrations.storage import storage_from_config
    from .logs import keep_secrets
    from .persistence import database
    from .recordings import public
    from .web import waiting

    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = database.engine_options(app.config)
    db.init_app(app)
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"), render_as_batch=True
    )
    api.init_app(app)
    cors.init_app(app, resources={"/api/*": {"origins": app.config["CORS_ORIGINS"]}}, **CORS_OPTIONS)
    database.init_app(app)
    public.init_app(app)
    app.extensions["audio_storage"] = storage_from_config(app.config, app.instance_path)
    keep_secrets(app.config)
    app.extensions["at_voice"] = voice_api.from_config(app.config)  # one kept client, or None
    waiting.init_app(app)


def register_blueprints(app: Flask) -> None:
    from .extensions import api
    from .web import callbacks, calls, ops, voice
    from .web.blueprints import PathOfAnyText

    app.url_map.converters["path"] = PathOfAnyText
    api.register_blueprint(voice.blp)
    api.register_blueprint(calls.blp)
    api.register_blueprint(callbacks.blp)
    api.register_blueprint(ops.blp)

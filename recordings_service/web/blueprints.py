"""The Blueprint every API blueprint is made from: flask-smorest's, with a body parser that answers
a JSON document nested too deeply for Python's parser (a RecursionError) with a 400, like any other
JSON that cannot be read, instead of a 500. And what a view says of the database failing under it."""

from collections.abc import Callable

import flask_smorest
from flask_smorest import abort
from webargs.flaskparser import FlaskParser

from ..persistence.database import once_more_if_disconnected


class _Parser(FlaskParser):
    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            abort(400, message="Invalid JSON body: nested too deeply")


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()


def on_database_error(detail: str) -> Callable:
    """Decorate a view with what it answers (500, ``detail``) when the database fails under it
    (errors.py answers it). A connection the server had closed is not a failure: the view runs once
    more on a new one."""

    def decorate(view: Callable) -> Callable:
        view = once_more_if_disconnected(view)
        view.database_error = detail
        return view

    return decorate

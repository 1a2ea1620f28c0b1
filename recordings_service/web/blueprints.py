"""The Blueprint every API blueprint is made from, and what a view says of the database failing under it.

It is flask-smorest's Blueprint with a stricter parser. JSON that Python's parser will not read (nested
too deeply, or a number of more than 4,300 digits) is a 400, like any other JSON that cannot be read,
instead of a 500. A query parameter or form field given more than once where its schema takes one
value is refused.
"""

import json
from collections.abc import Callable

import flask_smorest
import marshmallow as ma
from flask_smorest import abort
from webargs.flaskparser import FlaskParser
from werkzeug.routing import PathConverter

from ..persistence.database import once_more_if_disconnected


class _Parser(FlaskParser):
    def load_querystring(self, req, schema):
        return self._one_value_each(super().load_querystring(req, schema))

    def load_form(self, req, schema):
        return self._one_value_each(super().load_form(req, schema))

    @staticmethod
    def _one_value_each(proxy):
        # webargs reads the first of a repeated value and drops the others: refused instead, as a
        # validation error of that location, so that the route answers it as it answers a bad value.
        repeated = {
            key: ["Given more than once: give one value."]
            for key, values in proxy.data.lists()
            if len(values) > 1 and key not in proxy.multiple_keys
        }
        if repeated:
            raise ma.ValidationError(repeated)
        return proxy

    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            abort(400, message="Invalid JSON body: nested too deeply")
        except json.JSONDecodeError:
            raise  # webargs answers it: "Invalid JSON body."
        except ValueError:
            abort(400, message="Invalid JSON body: a number has too many digits")


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


class PathOfAnyText(PathConverter):
    """Werkzeug's ``path``, line breaks included (its ``.`` stops at one): a recording id holding one
    reaches the lookup, which answers it the API's 404, instead of matching only the DELETE route,
    whose plain segment takes line breaks, and answering 405."""

    regex = "[^/][\\s\\S]*?"

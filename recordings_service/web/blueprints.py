"""The Blueprint every API blueprint is made from: flask-smorest's, with a body parser that answers
a JSON document nested too deeply for Python's parser (a RecursionError) with a 400, like any other
JSON that cannot be read, instead of a 500."""

import flask_smorest
from flask_smorest import abort
from webargs.flaskparser import FlaskParser


class _Parser(FlaskParser):
    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            abort(400, message="Invalid JSON body: nested too deeply")


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()

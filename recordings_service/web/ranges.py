"""Byte ranges (RFC 9110 section 14): which bytes of the audio a ``Range`` and ``If-Range`` ask for.

One range is served as a 206 of it. A set of several is served whole (200), as RFC 9110 lets a server
do, rather than as multipart/byteranges: players ask for one range at a time. A set of which no range
is satisfiable is a 416; a header that is not a valid set of byte ranges (another unit, bad syntax) is
ignored, as RFC 9110 says it must or may be.
"""

import re
from datetime import datetime

from werkzeug.http import parse_if_range_header

from ..exceptions import RangeUnsatisfiable

_INT_RANGE = re.compile(r"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE = re.compile(r"-([0-9]+)")


def requested_span(header: str | None, length: int) -> tuple[int, int] | None:
    """Return the ``(start, stop)`` a Range header asks of ``length`` bytes, or None for all of them.

    Raises ``RangeUnsatisfiable`` when the header is a valid byte-range set with no range in those bytes.
    """
    unit, equals, range_set = (header or "").partition("=")
    if not equals or unit.strip(" \t").lower() != "bytes":
        return None  # no Range, or a unit this server does not know: ignored (RFC 9110 14.2)
    spans = []
    for element in range_set.split(","):
        spec = element.strip(" \t")
        if not spec:
            continue  # a list may hold empty elements (RFC 9110 5.6.1)
        try:
            span = _span(spec, length)
        except ValueError:
            return None  # an invalid range-set is ignored: the whole audio is served
        spans.append(span)
    if not spans:
        return None
    satisfiable = [span for span in spans if span is not None]
    if not satisfiable:
        raise RangeUnsatisfiable
    return satisfiable[0] if len(spans) == 1 else None


def _span(spec: str, length: int) -> tuple[int, int] | None:
    """The bytes one range-spec covers of ``length``, None when it covers none; ValueError if invalid."""
    if suffix := _SUFFIX_RANGE.fullmatch(spec):
        # bytes=-0 asks for the last no bytes: unsatisfiable (RFC 9110 14.1.2), as is any range of nothing.
        suffix_length = int(suffix[1])
        return (max(length - suffix_length, 0), length) if suffix_length and length else None
    int_range = _INT_RANGE.fullmatch(spec)
    if not int_range:
        raise ValueError(spec)
    first = int(int_range[1])
    last = int(int_range[2]) if int_range[2] else None
    if last is not None and last < first:
        raise ValueError(spec)
    if first >= length:
        return None
    return first, length if last is None else min(last + 1, length)


def range_applies(if_range: str | None, etag: str, last_modified: datetime | None) -> bool:
    """Whether an ``If-Range`` lets the Range apply, or the whole representation must be sent.

    The Range applies when ``If-Range`` is absent, names the current tag (compared strongly) or names
    the very Last-Modified time (RFC 9110 13.1.5).
    """
    if not if_range:
        return True
    validator = parse_if_range_header(if_range)
    if validator.date is not None:
        return last_modified is not None and validator.date == last_modified.replace(microsecond=0)
    # Werkzeug drops an entity tag's weakness; a weak tag never matches in If-Range.
    return not if_range.lstrip().startswith("W/") and validator.etag == etag

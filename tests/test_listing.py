"""GET /api/v1/voice/recordings: newest first, filtered, a page at a time."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from recordings_service.extensions import db
from recordings_service.persistence.models import Recording

URL = "/api/v1/voice/recordings"
T0 = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def recordings(app):
    """30 recordings, several created at the very same instant, of every status."""
    statuses = ["recording", "processing", "completed", "failed"]
    rows = [
        Recording(
            recording_id=f"conf_{n:03d}", status=statuses[n % 4], created_at=T0 + timedelta(seconds=n // 3)
        )
        for n in range(30)
    ]
    with app.app_context():
        db.session.add_all(rows)
        db.session.commit()
    return [f"conf_{n:03d}" for n in range(30)]


def walk(client, query: str = "") -> tuple[list[str], int]:
    """Follow next_cursor to the end; return the ids seen in order and the number of pages."""
    ids, pages, cursor = [], 0, None
    while True:
        response = client.get(f"{URL}?{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200, response.json
        pages += 1
        ids += [item["recording_id"] for item in response.json["items"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            return ids, pages


def test_pages_visit_every_recording_once_newest_first(client, recordings):
    ids, pages = walk(client, "limit=4")

    assert sorted(ids) == sorted(recordings)  # each once: none skipped, none repeated
    created = {rid: client.get(f"{URL}/{rid}").json["created_at"] for rid in ids}
    assert [created[rid] for rid in ids] == sorted(created.values(), reverse=True)
    assert pages == 8


def test_items_have_the_lookup_shape(client, recordings):
    body = client.get(f"{URL}?limit=1").json

    [item] = body["items"]
    assert item == client.get(f"{URL}/{item['recording_id']}").json
    assert set(body) == {"items", "next_cursor"}


def test_filters_combine_with_paging(client, recordings):
    after, before = "2024-01-15T10:00:02.000Z", "2024-01-15T10:00:08.000Z"

    ids, _ = walk(client, f"status=failed&limit=2&created_after={after}&created_before={before}")

    # conf_n is created at n // 3 seconds: after 2 s and before 8 s are n = 9..23; failed are n % 4 == 3.
    assert ids == [f"conf_{n:03d}" for n in (23, 19, 15, 11)]


def test_the_last_page_has_no_cursor_and_an_empty_list_is_fine(client):
    assert client.get(URL).json == {"items": [], "next_cursor": None}


def _raw_cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(value) -> str:
    return _raw_cursor(json.dumps(value).encode())


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("status=done", "status"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2024-13-01", "created_before"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WyIyMDI0LTAxLTE1VDEwOjAwOjAwIiwgMV0", "cursor"),  # a naive time: not one of ours
        ("statu=failed", "statu"),
        ("cursor=", "cursor"),  # no position is said by leaving the cursor out
        ("limit=" + "9" * 5000, "limit"),
        ("limit=٣", "limit"),
        ("created_after=0001-01-01T00:00:00%2B14:00", "created_after"),  # before year 1 in UTC
        ("created_before=9999-12-31T23:59:59-14:00", "created_before"),  # after year 9999 in UTC
        ("cursor=" + _cursor(["2024-01-15T10:00:00+00:00", 2**63]), "cursor"),  # a key no row has
        ("cursor=" + _cursor(["2024-01-15T10:00:00+00:00", 10**200]), "cursor"),
        ("cursor=" + _cursor(["2024-01-15T10:00:00+00:00", -1]), "cursor"),
        ("cursor=" + _cursor(["0001-01-01T00:00:00+14:00", 1]), "cursor"),
        ("cursor=" + _raw_cursor(b'["2024-01-15T10:00:00+00:00", ' + b"9" * 5000 + b"]"), "cursor"),
        ("cursor=" + _raw_cursor(b"[" * 5000 + b"]" * 5000), "cursor"),  # nested 5,000 deep
        ("cursor=" + _raw_cursor(b"\xff\xfe"), "cursor"),
    ],
)
def test_bad_parameters_are_400_naming_them(client, query, field):
    response = client.get(f"{URL}?{query}")

    assert response.status_code == 400
    assert field in response.json["detail"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=5&limit=10", "limit"),
        ("status=completed&status=failed", "status"),
        ("status=completed&status=completed", "status"),
        ("created_after=2024-01-15T10:00:00Z&created_after=2024-01-16T10:00:00Z", "created_after"),
    ],
)
def test_a_parameter_given_twice_is_400_naming_it_not_one_value_dropped(client, recordings, query, field):
    response = client.get(f"{URL}?{query}")

    assert response.status_code == 400
    assert response.json == {"detail": f"Invalid request: {field}: Given more than once: give one value."}


def test_the_cli_lists_through_the_same_query(runner, recordings):
    lines = runner.invoke(
        args=["recordings", "list", "--status", "completed", "--limit", "3"]
    ).output.splitlines()

    assert [line.split()[0] for line in lines] == ["conf_026", "conf_022", "conf_018"]

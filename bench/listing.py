"""Listing at scale: walk every page of a large table, and time the first page against a deep one.

    python bench/listing.py            # the database named by DATABASE_URL (default: the local SQLite file)

Seeds --rows demo recordings first (existing ids are kept). Prints JSON.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import DevelopmentConfig  # noqa: E402
from recordings_service import create_app  # noqa: E402
from recordings_service.devtools.demo import count_recordings, seed_demo  # noqa: E402
from recordings_service.recordings.public import page  # noqa: E402


def median_ms(call, repeat: int = 30) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()
    app = create_app(DevelopmentConfig)
    with app.app_context():
        seed_demo(args.rows)
        total = count_recordings()
        seen, pages, cursor, deep_cursor = set(), 0, None, None
        started = time.perf_counter()
        while True:
            items, cursor = page(limit=args.limit, after=cursor)
            seen.update(item.id for item in items)
            pages += 1
            if pages == int(total / args.limit * 0.9):
                deep_cursor = cursor  # 90% of the way down the list
            if cursor is None:
                break
        walk_seconds = time.perf_counter() - started
        first = median_ms(lambda: page(limit=args.limit))
        deep = median_ms(lambda: page(limit=args.limit, after=deep_cursor))
    print(
        json.dumps(
            {
                "database": app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0],
                "rows": total,
                "pages": pages,
                "rows_visited_once": len(seen) == total,
                "walk_seconds": round(walk_seconds, 1),
                "first_page_ms": round(first, 2),
                "deep_page_ms": round(deep, 2),
                "deep_over_first": round(deep / first, 2),
            }
        )
    )


if __name__ == "__main__":
    main()

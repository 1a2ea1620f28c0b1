"""Where a lookup's time goes: `python bench/profile_lookup.py [sqlite|postgresql]`.

Seeds 100,000 recordings (like `make bench`), then calls the app and the lean baseline in process
(no server, no network) with the same 5,000 random ids, 1 in 10 missing; prints each one's time per
lookup (best of three rounds) and pyinstrument's profile of the app.
"""

import os
import random
import sys
import time
from pathlib import Path

from pyinstrument import Profiler
from werkzeug.test import EnvironBuilder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import database  # noqa: E402
from recordings_service import create_app  # noqa: E402
from testkit.config import config_for  # noqa: E402

ROWS = 100_000


def environs(count: int) -> list[dict]:
    rng = random.Random(1)
    paths = [
        f"/api/v1/voice/recordings/{'missing' if rng.random() < 0.1 else 'conf'}_{rng.randrange(ROWS):010d}"
        for _ in range(count)
    ]
    return [EnvironBuilder(path=path).get_environ() for path in paths]


def call_all(app, requests: list[dict]) -> float:
    """Seconds per lookup, ``app`` called for each request."""
    started = time.perf_counter()
    for environ in requests:
        for _ in app(dict(environ), lambda status, headers, exc_info=None: None):
            pass
    return (time.perf_counter() - started) / len(requests)


def main(kind: str) -> None:
    with database(kind, ROWS) as url:
        os.environ["DATABASE_URL"] = url  # read by the baseline when imported
        from bench.baseline import app as baseline

        # The completed cache off: the same 5,000 ids are asked again each round, and would be served
        # from it, where wrk's random ids over 100,000 rows nearly always miss it.
        app = create_app(config_for(url, COMPLETED_CACHE_SIZE=0))

        requests = environs(5000)
        for name, wsgi_app in (("app", app), ("baseline", baseline)):
            call_all(wsgi_app, requests[:500])  # warm up: connections, caches, prepared statements
            best = min(call_all(wsgi_app, requests) for _ in range(3))
            print(f"{kind} {name}: {best * 1e6:.0f} us per lookup")
        profiler = Profiler(interval=0.0001)
        with profiler:
            call_all(app, requests)
        print(profiler.output_text(color=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite")

"""The README's and docs' examples, run as a reader runs them: every ```sh block, in order, in a fresh
checkout with the service running as `make run` runs it, must work; a ```json block right after one is
its sample output, and the real output must have the same keys. The README's endpoint table must list
every route of the app."""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from recordings_service import create_app
from testkit.config import config_for
from testkit.servers import gunicorn, worker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "deploy/README.md",
    ROOT / "bench/README.md",
]
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
# The examples name make run's default port; the test's service listens on a free one.
DEFAULT_BASE = "localhost:8000"


def examples(page: Path) -> list[tuple[str, list | None]]:
    """The ``sh`` blocks of ``page``, in order, each with the JSON lines of the sample output that
    follows it (a ``json`` block right after it), or None."""
    markdown = page.read_text()
    # An indented fence (in a list item) would be passed over: examples start at the margin.
    assert not re.search(r"^[ \t]+```sh", markdown, re.MULTILINE), f"{page}: an indented sh block"
    blocks = list(FENCE.finditer(markdown))
    found = []
    for block, following in zip(blocks, [*blocks[1:], None], strict=False):
        if block.group(1) != "sh":
            continue
        sample = None
        if (
            following
            and following.group(1) == "json"
            and not markdown[block.end() : following.start()].strip()
        ):
            sample = [json.loads(line) for line in following.group(2).splitlines() if line.strip()]
        found.append((block.group(2), sample))
    return found


def same_keys(sample, real) -> bool:
    """Whether ``real`` has the shape of ``sample``: the same keys, all the way down."""
    if isinstance(sample, dict):
        return (
            isinstance(real, dict)
            and sample.keys() == real.keys()
            and all(same_keys(sample[k], real[k]) for k in sample)
        )
    if isinstance(sample, list) and sample and isinstance(real, list) and real:
        return same_keys(sample[0], real[0])
    return True


def json_lines(output: str) -> list:
    """The JSON objects ``output`` prints, one a line; its other lines are left out."""
    documents = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                documents.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return documents


@pytest.fixture(scope="module")
def checkout():
    """A scratch directory that looks like a fresh clone after `make run` (its files, .venv); the
    environment a second terminal has, pointed at the running service's database and audio."""
    with tempfile.TemporaryDirectory(prefix="docs-") as scratch:
        scratch = Path(scratch)
        clone = scratch / "clone"
        clone.mkdir()
        for entry in ROOT.iterdir():
            if entry.name not in (".venv", "instance", ".git") and not entry.name.startswith(".pytest"):
                (clone / entry.name).symlink_to(entry)
        (clone / ".venv").symlink_to(Path(sys.prefix))
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(
                ("RECORDINGS_", "VOICE_", "AT_", "WEBHOOK_", "DATABASE_", "AUDIO_", "PORT")
            )
        }
        env.update(
            RECORDINGS_ENV="development",
            DATABASE_URL=f"sqlite:///{scratch}/recordings.db",
            AUDIO_STORAGE_URL=f"file://{scratch}/audio",
            PATH=f"{clone / '.venv/bin'}:{env.get('PATH', '')}",
        )
        # As `make run`: migrate, a few demo rows, then the web server and the worker (Procfile).
        for command in (["db", "upgrade"], ["recordings", "seed-demo", "--count", "20"]):
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", *command],
                cwd=clone,
                env=env,
                check=True,
                capture_output=True,
            )
        served = {name: value for name, value in env.items() if name != "DATABASE_URL"}
        with (
            gunicorn(env["DATABASE_URL"], workers=None, **served) as base,
            worker(env["DATABASE_URL"], **served),
        ):
            yield clone, env, base


def test_every_shell_example_works_as_pasted(checkout):
    clone, env, base = checkout
    port = base.rsplit(":", 1)[1]
    ran = 0
    for page in PAGES:
        if not page.exists():
            continue
        for text, sample in examples(page):
            script = text.replace(DEFAULT_BASE, f"localhost:{port}")
            result = subprocess.run(
                ["bash", "-e", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=180
            )
            where = f"{page.relative_to(ROOT)}:\n{text}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
            assert result.returncode == 0, where
            if sample is not None:
                real = json_lines(result.stdout)
                assert len(real) == len(sample), where
                for shown, answered in zip(sample, real, strict=True):
                    assert same_keys(shown, answered), f"{where}\n--- shown: {shown}"
            ran += 1
    assert ran >= 10


def test_the_readme_lists_every_endpoint(tmp_path):
    app = create_app(config_for(f"sqlite:///{tmp_path}/routes.db"))
    routes = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    table = re.findall(
        r"^\| `(GET|POST|DELETE|PUT|PATCH)` \| `([^`]+)` \|", (ROOT / "README.md").read_text(), re.MULTILINE
    )
    assert set(table) == routes
    assert len(table) == len(routes)

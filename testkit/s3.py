"""An S3 protocol peer on loopback: moto's ThreadedMotoServer, in a process of its own.

Its own process because moto keeps every object in its memory (a test measuring the client's memory
must not count the server's), and because stopping it is then what an outage is: the peer goes away.

    with moto_s3() as s3:
        client = s3.client()
        client.create_bucket(Bucket="audio")

``python -m testkit.s3 PORT`` is that process: it serves until its standard input closes.
"""

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testkit.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
# moto accepts any credentials; these only have to be present, and say they are fake.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-not-a-key",
    "AWS_SECRET_ACCESS_KEY": "testing-not-a-secret",
    "AWS_REGION": "us-east-1",
}


class MotoS3:
    """A running moto S3 server: its endpoint URL, and a way to stop it (an outage)."""

    def __init__(self, process: subprocess.Popen, endpoint_url: str):
        self.process = process
        self.endpoint_url = endpoint_url

    def environment(self) -> dict[str, str]:
        """The AWS_* settings that point boto3 at this server, as an operator would set them."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client(self):
        """A boto3 S3 client for this server (for test setup: buckets, inspecting objects)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=CREDENTIALS["AWS_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def moto_s3(port: int | None = None) -> Iterator[MotoS3]:
    """Run moto's S3 server on ``port`` (by default a free loopback port) for the block; yield it."""
    port = port or free_port()
    errors = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "testkit.s3", str(port)],
        cwd=ROOT,
        env={**os.environ, **CREDENTIALS},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
    )
    server = MotoS3(process, f"http://127.0.0.1:{port}")
    try:
        ready = process.stdout.readline()
        if ready.strip() != b"ready":
            process.wait(timeout=10)
            errors.seek(0)
            raise RuntimeError(f"the moto server did not start: {errors.read().decode(errors='replace')}")
        yield server
    finally:
        server.stop()
        process.stdout.close()
        errors.close()


def _serve(port: int) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()  # until the parent closes it (or dies)
    finally:
        server.stop()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))

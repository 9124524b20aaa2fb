"""An S3-compatible server for tests: moto's server mode on 127.0.0.1 (a real HTTP endpoint), stopped at the end.

Shared by the source tests (s3:// refs) and the orchestration tests (the
shared-nothing store). Importable from every test folder: pytest puts tests/
on sys.path for the root conftest.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3:
    endpoint: str
    options: dict

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options)

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` (if missing); returns ``s3://name``."""
        fs = self.fs()
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"

    def upload(self, local: Path, url: str) -> None:
        """Copy a local file or folder to ``s3://bucket/key``."""
        fs = self.fs()
        self.bucket(url.removeprefix("s3://").split("/", 1)[0])
        fs.put(str(local), url.removeprefix("s3://"), recursive=Path(local).is_dir())


@contextlib.contextmanager
def moto_server() -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 (a free port), with the options that reach it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield S3(endpoint, {"endpoint_url": endpoint, "key": "testing", "secret": "testing"})
    finally:
        server.stop()

"""MLflow for tests: a tracking store (SQLite) used in this process, or a real tracking server on 127.0.0.1.

``log_version`` logs and registers a small PyTorch model the way teams do
(``mlflow.pytorch.log_model`` with a signature, an input example and metadata).
Importable from every test folder: pytest puts tests/ on sys.path for the root conftest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
EXPERIMENT = "imaudit-tests"


def local_store(root: Path) -> str:
    """A tracking and registry store in a SQLite file under ``root`` (artifacts beside it); its URI."""
    import mlflow

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    return uri


class TrackingServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and artifacts it serves itself.

    It runs in its own process group and is stopped with the whole group. Its
    start-up is bounded by ``timeout`` (two minutes were seen on a loaded machine).
    """

    def __init__(self, root: Path, timeout: float = 300) -> None:
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(socket.socket()) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{port}"
        self.log = root / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
            env=env, cwd=root, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait(timeout)
            import mlflow

            mlflow.MlflowClient(tracking_uri=self.uri).create_experiment(EXPERIMENT)
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"mlflow server exited with {self.proc.returncode}\n{_tail(self.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.uri}/health", timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server not healthy after {timeout}s\n{_tail(self.log)}")
            time.sleep(1)

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL what is left (idempotent)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._fh.close()


@contextlib.contextmanager
def tracking_server(root: Path, timeout: float = 300) -> Iterator[TrackingServer]:
    """A TrackingServer for the block; stopped at its end (or earlier, by its ``stop``)."""
    server = TrackingServer(root, timeout)
    try:
        yield server
    finally:
        server.stop()


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def log_version(uri: str, name: str, module: Any, *, size: int = 32, batch: int = 2, metadata: dict | None = None,
                tags: dict | None = None, history: list[dict] | None = None, fmt: str = "pt2") -> str:
    """Log ``module`` in a run (metrics from ``history``), register it as a new version of ``name``; its number."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(uri)
    example = torch.zeros(batch, 3, size, size)
    with torch.no_grad():
        out = module.eval()(example)
    # Batch dimension -1: a variable batch (exported as dynamic when the example holds more than one image).
    signature = infer_signature(example.numpy(), out.numpy())
    experiment = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(EXPERIMENT).experiment_id
    with mlflow.start_run(experiment_id=experiment):
        for row in history or []:
            for key, value in row.items():
                if key != "epoch":
                    mlflow.log_metric(key, value, step=row["epoch"])
        info = mlflow.pytorch.log_model(module, name="model", input_example=example.numpy(), signature=signature,
                                        serialization_format=fmt, metadata=metadata,
                                        pip_requirements=["torch"],  # no requirement inference (a subprocess)
                                        registered_model_name=name)
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri=uri)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    return version

"""MLflow for tests: a tracking store (SQLite) used in this process, or a real tracking server on 127.0.0.1.

``log_version`` logs and registers a small PyTorch model the way teams do
(``mlflow.pytorch.log_model`` with a signature, an input example and metadata).
Importable from every test folder: pytest puts tests/ on sys.path for the root conftest.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from local_procs import Proc, free_port

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
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        self.log = root / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.proc = Proc(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
            env, self.log, cwd=root)
        try:
            self.proc.wait_healthy(f"{self.uri}/health", timeout, "mlflow server")
            import mlflow

            mlflow.MlflowClient(tracking_uri=self.uri).create_experiment(EXPERIMENT)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL what is left (idempotent)."""
        self.proc.stop(timeout=20)


@contextlib.contextmanager
def tracking_server(root: Path, timeout: float = 300) -> Iterator[TrackingServer]:
    """A TrackingServer for the block; stopped at its end (or earlier, by its ``stop``)."""
    server = TrackingServer(root, timeout)
    try:
        yield server
    finally:
        server.stop()


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

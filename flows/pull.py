"""The pull step of imaudit's deployments (prefect.yaml): where a worker's run gets its code and folder.

Prefect's default pull step changes into the folder `prefect deploy` ran in,
a path that exists only on the deploying machine. imaudit's flows are imported
by module path from the imaudit installed in the worker's environment (from
requirements.lock, the commit the deployments were made from), and every input
and output lives in the shared store, so a run needs no checkout: this step
names the code that will run (version and location, in the run's log) and
gives the run a scratch folder of the worker's own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import imaudit


def worker_code(directory: str | None = None) -> dict[str, str]:
    """Pull step: the installed imaudit's version and location, and the run's working folder.

    ``directory`` (default: IMAUDIT_WORKDIR, else the system's temp folder) is
    created when missing; Prefect changes into the returned ``directory``.
    """
    folder = Path(directory or os.environ.get("IMAUDIT_WORKDIR") or tempfile.gettempdir()).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"imaudit {imaudit.__version__} from {Path(imaudit.__file__).parent}; working in {folder}")
    return {"directory": str(folder), "version": imaudit.__version__}

"""Faults for the fault-injection tests: hostile files, a CLI in its own process, its process tree."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import psutil
from PIL import Image

SHAPES = "builtin:shapes?n=60&size=32"


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid greyscale PNG of width x height black pixels, a few hundred KB on disk.

    Written chunk by chunk (rows streamed through zlib), so making it costs no
    more memory than one row: the test must not need what the product refuses.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + one byte per pixel
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def sparse_file(path: Path, size: int) -> Path:
    """A file that claims ``size`` bytes but occupies almost no disk (a hole)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def small_images(folder: Path, classes: dict[bytes | str, int], size: int = 16, seed: int = 0) -> None:
    """``classes`` name -> count PNGs of distinct colours under ``folder`` (bytes names may be non-UTF-8)."""
    import random

    rng = random.Random(seed)
    for name, n in classes.items():
        d = os.path.join(os.fsencode(folder), os.fsencode(name))
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            Image.new("RGB", (size, size), colour).save(os.fsdecode(os.path.join(d, b"img%d.png" % i)))


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment a user's shell would give the CLI, with its own imaudit and Prefect homes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    prefect_home = home / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    env.update(IMAUDIT_HOME=str(home), PREFECT_HOME=str(prefect_home), **extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from imaudit.cli import main; main()", *args]


def run_cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """The console entry point in a child process: exactly what a user (or CI) sees; stdin not a terminal."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


class Tree:
    """Every process a child ever had, remembered by (pid, start time) so a reused pid is not mistaken."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.seen: dict[int, tuple[float, str]] = {}

    def scan(self) -> list[psutil.Process]:
        try:
            kids = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for k in kids:
            try:  # the command line is read again each time: a launcher may have exec'd since
                self.seen[k.pid] = (k.create_time(), " ".join(k.cmdline())[:120])
            except psutil.Error:
                continue
        return kids

    def alive(self) -> list[str]:
        """Descendants seen earlier that still run (zombies not counted: they hold no memory)."""
        out = []
        for pid, (created, cmd) in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{pid} {cmd}")
            except psutil.NoSuchProcess:
                continue
        return out


def wait_for(condition, timeout: float, what: str, step: float = 0.2) -> None:
    """Poll ``condition`` until true (no timing is asserted; the timeout only bounds a broken run)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        time.sleep(step)

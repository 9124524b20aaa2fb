"""Storage anywhere fsspec reaches: URLs in, local content-addressed copies out.

Dataset and model refs may name URLs (``s3://``, ``gs://``, ``https://``,
``file://``, any protocol fsspec knows). ``fetch_file`` and ``fetch_tree``
copy what a URL names into the local cache (``$IMAUDIT_CACHE/fetched``):

    fetched/blobs/<sha256>[.ext]      each distinct file once, named by its content
    fetched/keys/<sha256 of url+ETag> the blob a remote object was last seen to hold
    fetched/trees/<sha256 of listing> a folder of hard links to blobs, as the URL laid it out

so a file is downloaded once, identical files are stored once, and the local
copy's sha256 is the content's (audits hash and cache by content, never by
URL). An object whose listing carries no version field (ETag, mtime, ...) is
downloaded again each time, because nothing else says whether it changed.

Storage options (credentials, endpoints) come, per protocol, from:
1. ``IMAUDIT_STORAGE_OPTIONS``: JSON, ``{"s3": {"endpoint_url": ..., "key": ...}}``;
   keys that are not protocols apply to every protocol;
2. a Prefect Secret block holding that JSON, named by ``IMAUDIT_STORAGE_BLOCK``
   (``secret/NAME``), read once per process;
3. each filesystem's own environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``...).
Explicit values in 1 win over 2.

``Location`` is the small read/write view the report store, registry and
chunk cache use for a shared-nothing set-up (a bucket instead of a shared
disk); local paths and URLs behave the same.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from tqdm.auto import tqdm

from imaudit import paths
from imaudit.errors import BadInputError, RefError
from imaudit.io import atomic_dir, atomic_write_bytes, sha256_file

OPTIONS_ENV = "IMAUDIT_STORAGE_OPTIONS"
BLOCK_ENV = "IMAUDIT_STORAGE_BLOCK"
_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
# Listing fields that change when an object changes; without one a cached copy cannot be trusted.
VERSION_FIELDS = ("ETag", "etag", "VersionId", "md5Hash", "generation", "crc32c", "LastModified",
                  "last_modified", "mtime", "updated")
PROGRESS_MIN_FILES = 50


# --- URLs and options -----------------------------------------------------------------------

def is_url(text: str) -> bool:
    """Whether ``text`` is a URL with a protocol (``s3://...``), as opposed to a local path."""
    return bool(_URL.match(str(text)))


def protocol(url: str) -> str:
    match = _URL.match(url)
    return match.group(1).lower() if match else "file"


def _check_protocol(url: str) -> None:
    proto = protocol(url)
    if proto not in fsspec.available_protocols():
        raise RefError(f"{url}: unknown storage protocol '{proto}://'")


@functools.lru_cache(maxsize=1)
def _block_options(name: str) -> dict[str, Any]:
    """The options dict held by a Prefect Secret block, e.g. ``secret/s3-options``."""
    # Imported here: only deployments that name a block need Prefect's client.
    from prefect.blocks.core import Block

    try:
        block = Block.load(name)
    except (ValueError, RuntimeError) as exc:
        raise BadInputError(f"{BLOCK_ENV}={name}: cannot load the Prefect block ({exc})") from exc
    value = block.get() if hasattr(block, "get") else getattr(block, "value", None)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadInputError(f"{BLOCK_ENV}={name}: the block's value is not JSON") from None
    if not isinstance(value, dict):
        raise BadInputError(f"{BLOCK_ENV}={name}: the block must hold a JSON object of storage options")
    return value


def _env_options() -> dict[str, Any]:
    text = os.environ.get(OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{OPTIONS_ENV} is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise BadInputError(f"{OPTIONS_ENV} must be a JSON object of storage options")
    return value


def storage_options(proto: str) -> dict[str, Any]:
    """The fsspec options for one protocol, merged from the Prefect block and the environment."""
    known = set(fsspec.available_protocols())
    merged: dict[str, Any] = {}
    block = os.environ.get(BLOCK_ENV, "").strip()
    for source in ([_block_options(block)] if block else []) + [_env_options()]:
        merged.update({k: v for k, v in source.items() if k not in known})  # options for every protocol
        if isinstance(source.get(proto), dict):
            merged.update(source[proto])
    return merged


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem behind ``url`` (with its storage options) and the path inside it."""
    _check_protocol(url)
    return url_to_fs(url, **storage_options(protocol(url)))


# --- fetching into the content-addressed cache -----------------------------------------------

def fetch_root(cache: Path | None = None) -> Path:
    return (Path(cache) if cache is not None else paths.cache_dir()) / "fetched"


def _version_key(url: str, info: dict[str, Any]) -> str | None:
    """A key that changes whenever the object does; None when the listing says nothing about versions."""
    fields = {k: str(info[k]) for k in VERSION_FIELDS if info.get(k) not in (None, "")}
    if not fields:
        return None
    fields.update(url=url, size=str(info.get("size")))
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _suffix(name: str) -> str:
    """The file's extension when it is a plain one (readers such as safetensors go by it)."""
    suffix = posixpath.splitext(name)[1]
    return suffix.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,12}", suffix) else ""


def _known_blob(root: Path, key: str | None) -> Path | None:
    if key is None:
        return None
    ref = root / "keys" / key
    try:
        blob = root / "blobs" / ref.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return blob if blob.is_file() else None


def _store_blob(root: Path, downloaded: Path, key: str | None, suffix: str) -> Path:
    """Move a downloaded file into blobs/<sha256><suffix> (first writer wins); remember its version key."""
    digest = sha256_file(downloaded) + suffix
    blob = root / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    if blob.is_file():
        downloaded.unlink()
    else:
        os.chmod(downloaded, 0o444)  # blobs are shared by trees: nobody may edit one in place
        os.replace(downloaded, blob)
    if key is not None:
        keys = root / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        tmp = keys / f".{key}.{os.getpid()}"
        tmp.write_text(digest, encoding="ascii")
        os.replace(tmp, keys / key)
    return blob


def _download(fs: fsspec.AbstractFileSystem, remote: list[str], root: Path, desc: str, progress: bool) -> list[Path]:
    """Download remote paths into a temp folder under the cache; returns the local files in order."""
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    local = [tmp / f"{i:06d}" for i in range(len(remote))]
    try:
        # fs.get with lists lets async filesystems (s3, gcs, http) download concurrently.
        bar = tqdm(total=len(remote), desc=desc, unit="file",
                   # None: tqdm shows the bar only when stderr is a terminal
                   disable=True if not progress or len(remote) < PROGRESS_MIN_FILES else None)
        step = 64
        for i in range(0, len(remote), step):
            fs.get(remote[i:i + step], [str(p) for p in local[i:i + step]])
            bar.update(len(remote[i:i + step]))
        bar.close()
    except FileNotFoundError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RefError(f"{desc}: {exc.filename or exc} does not exist") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return local


def _fetch_many(fs: fsspec.AbstractFileSystem, infos: list[dict[str, Any]], root: Path, url_of: dict[str, str],
                desc: str, progress: bool) -> dict[str, Path]:
    """remote path -> local blob, downloading only what the cache does not already hold."""
    root.mkdir(parents=True, exist_ok=True)
    blobs: dict[str, Path] = {}
    todo: list[tuple[str, str | None]] = []
    for info in infos:
        key = _version_key(url_of[info["name"]], info)
        known = _known_blob(root, key)
        if known is not None:
            blobs[info["name"]] = known
        else:
            todo.append((info["name"], key))
    if todo:
        local = _download(fs, [name for name, _ in todo], root, desc, progress)
        try:
            for (name, key), path in zip(todo, local):
                blobs[name] = _store_blob(root, path, key, _suffix(name))
        finally:
            shutil.rmtree(local[0].parent, ignore_errors=True)
    return blobs


def _info(fs: fsspec.AbstractFileSystem, path: str, url: str) -> dict[str, Any]:
    try:
        return fs.info(path)
    except FileNotFoundError:
        raise RefError(f"{url} does not exist") from None
    except PermissionError as exc:
        raise RefError(f"{url}: access denied ({' '.join(str(exc).split())[:160]})") from None


def fetch_file(url: str, *, cache: Path | None = None, progress: bool = False) -> Path:
    """A local, read-only copy of the file at ``url``, named by its sha256 (downloaded once)."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)  # a long-lived worker must see objects changed since its last listing
    info = _info(fs, path, url)
    if info.get("type") == "directory":
        raise RefError(f"{url} is a folder, not a file")
    info = {**info, "name": path}
    return _fetch_many(fs, [info], fetch_root(cache), {path: url}, url, progress)[path]


def fetch_tree(url: str, *, cache: Path | None = None, progress: bool = True,
               only: Iterable[str] | None = None, suffixes: Iterable[str] | None = None) -> Path:
    """A local folder mirroring the files under ``url`` (or only the relative paths in ``only``).

    ``suffixes`` keeps only files with those extensions (e.g. images), so other
    objects in a bucket folder are never downloaded.
    Files are stored once as blobs and linked into ``fetched/trees/<digest>``,
    where the digest covers the relative paths and contents, so two URLs with the
    same files share one folder. Listed paths that leave the folder are refused.
    """
    fs, base = filesystem(url)
    base = base.rstrip("/")
    fs.invalidate_cache(base)  # a long-lived worker must see objects changed since its last listing
    root = fetch_root(cache)
    if only is None:
        if not fs.isdir(base):
            raise RefError(f"{url} is not a folder (or does not exist)")
        keep = {x.lower() for x in suffixes} if suffixes is not None else None
        listing = {
            name: info for name, info in fs.find(base, detail=True).items()
            if info.get("type") != "directory" and (keep is None or posixpath.splitext(name)[1].lower() in keep)
        }
        rel = {name: posixpath.relpath(name, base) for name in listing}
        infos = [{**info, "name": name} for name, info in listing.items()]
    else:
        rel, infos = {}, []
        for r in sorted(set(only)):
            name = f"{base}/{confined(r, url)}"
            try:
                infos.append({**fs.info(name), "name": name})
            except FileNotFoundError:
                continue  # the caller reports missing files (e.g. a CSV row whose image is absent)
            rel[name] = posixpath.normpath(r)
    if not infos:
        raise RefError(f"{url}: no files found")
    base_url = url.rstrip("/")
    url_of = {i["name"]: f"{base_url}/{rel[i['name']]}" for i in infos}
    blobs = _fetch_many(fs, infos, root, url_of, url, progress)
    entries = sorted((rel[name], blob.name) for name, blob in blobs.items())
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    tree = root / "trees" / digest
    if not (tree / ".complete").is_file():
        with atomic_dir(tree, replace=False) as tmp:
            for relpath, sha in entries:
                target = tmp / relpath
                target.parent.mkdir(parents=True, exist_ok=True)
                _link(root / "blobs" / sha, target)
            (tmp / ".complete").write_text(url + "\n", encoding="utf-8")
    return tree


def inside(relpath: str) -> bool:
    """Whether a relative path stays inside its folder (no absolute path, URL or '..' out of it)."""
    text = str(relpath).replace("\\", "/")
    norm = posixpath.normpath(text)
    return not (is_url(text) or text.startswith("/") or norm == ".." or norm.startswith("../"))


def confined(relpath: str, where: str) -> str:
    """``relpath`` normalised; RefError naming ``where`` when it would leave the folder."""
    if not inside(relpath):
        raise RefError(f"{where}: path {relpath!r} leaves the folder")
    return posixpath.normpath(str(relpath).replace("\\", "/"))


def _link(blob: Path, target: Path) -> None:
    try:
        os.link(blob, target)
    except OSError:  # another filesystem, or links not allowed: copy instead
        shutil.copyfile(blob, target)


# --- read/write view for stores ---------------------------------------------------------------

class Location:
    """A folder, local or remote, to read and write files by relative key.

    Writes are whole-object (``pipe``): object stores replace objects
    atomically, and local writes go through a temp file and a rename, so a
    reader never sees half a file.
    """

    def __init__(self, url_or_path: str | Path) -> None:
        text = str(url_or_path)
        self.url = text.rstrip("/") if is_url(text) else str(Path(text).expanduser().resolve())
        self.fs, self.root = filesystem(self.url) if is_url(text) else (fsspec.filesystem("file"), self.url)

    def path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{confined(key, self.url)}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}/{key}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if isinstance(self.fs, LocalFileSystem):
            atomic_write_bytes(target, data)
        else:
            self.fs.pipe_file(target, data)

    def list(self, prefix: str = "") -> list[str]:
        """Relative keys of the files under ``prefix``, sorted."""
        start = self.path(prefix) if prefix else self.root
        if not self.fs.exists(start):
            return []
        return sorted(posixpath.relpath(p, self.root) for p in self.fs.find(start))

    def delete(self, key: str) -> None:
        self.fs.rm_file(self.path(key))

    # -- whole files and folders (checkpoints, audit folders) ---------------------------------
    def url_of(self, key: str) -> str:
        """The URL (or local path) of ``key`` under this location."""
        return f"{self.url}/{confined(key, self.url)}"

    def put_file(self, local: str | Path, key: str) -> None:
        """Upload one local file under ``key`` (a whole-object write on object stores)."""
        target = self.path(key)
        if isinstance(self.fs, LocalFileSystem):
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            tmp = f"{posixpath.dirname(target)}/.{posixpath.basename(target)}.{os.getpid()}.part"
            self.fs.put_file(str(local), tmp)
            os.replace(tmp, target)
        else:
            self.fs.put_file(str(local), target)

    def get_file(self, key: str, local: str | Path) -> Path:
        """Download ``key`` to ``local`` through a temp file (a reader never sees half a file)."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.parent / f".{local.name}.{os.getpid()}.part"
        try:
            self.fs.get_file(self.path(key), str(tmp))
            os.replace(tmp, local)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}/{key}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return local


# --- the shared store: registry, reports, chunk cache and Prefect results at one URL ----------

STORE_ENV = "IMAUDIT_STORAGE"


def shared_url() -> str | None:
    """The shared store's URL (``IMAUDIT_STORAGE``), or None for the embedded default (local folders).

    ``s3://bucket/imaudit``, ``gs://...``, ``file:///shared/imaudit`` or any fsspec URL. Everything a
    worker needs from another machine lives under it: ``registry/``, ``reports/``, ``cache/chunks/``
    and ``prefect-results/``, so workers share nothing else (no common disk, no common home).
    """
    text = os.environ.get(STORE_ENV, "").strip()
    if not text:
        return None
    if text.startswith("{{"):
        # prefect.yaml's job variables copy the deployer's IMAUDIT_STORAGE; unset there, the template stays.
        raise BadInputError(f"{STORE_ENV}={text!r} was never filled in: export {STORE_ENV} (or set it to '') "
                            "before `prefect deploy`")
    if not is_url(text):
        raise BadInputError(f"{STORE_ENV}={text!r}: expected a URL such as s3://bucket/imaudit or file:///path")
    _check_protocol(text)
    return text.rstrip("/")


def shared(part: str) -> Location | None:
    """A part of the shared store (``registry``, ``reports``, ``cache/chunks``), or None without one."""
    url = shared_url()
    return Location(f"{url}/{part}") if url else None


def publish_tree(local: Path, dest: Location, prefix: str, last: str) -> list[str]:
    """Upload every file under ``local`` to ``dest/prefix/``, the file ``last`` after all others.

    Object stores have no folder rename, so readers treat ``last`` (an audit's
    audit.json, a release's manifest.json) as the commit mark: a folder
    without it is still being published (or its publisher died) and is skipped.
    Returns the uploaded keys.
    """
    files = sorted(p for p in Path(local).rglob("*") if p.is_file())
    rel = [p.relative_to(local).as_posix() for p in files]
    if last not in rel:
        raise FileNotFoundError(f"{local}/{last}: nothing to publish without it")
    order = [r for r in rel if r != last] + [last]
    for r in order:
        dest.put_file(Path(local) / r, f"{prefix}/{r}")
    return [f"{prefix}/{r}" for r in order]


def mirror_tree(src: Location, prefix: str, local: Path, mark: str, keys: list[str] | None = None) -> bool:
    """Copy the published folder ``src/prefix`` (one holding ``mark``) into ``local``, once.

    Published folders never change, so a complete local copy (its ``mark``
    present) is reused; the copy is built beside ``local`` and renamed into
    place. ``keys``: a listing of ``src`` already made (saves one per folder).
    Returns False when ``prefix`` is not (yet) published.
    """
    if (Path(local) / mark).is_file():
        return True
    keys = [k for k in (keys if keys is not None else src.list(prefix)) if k.startswith(f"{prefix}/")]
    if f"{prefix}/{mark}" not in keys:
        return False
    with atomic_dir(local) as tmp:
        for key in keys:
            src.get_file(key, tmp / posixpath.relpath(key, prefix))
    return True

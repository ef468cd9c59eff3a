"""Where artifacts (adapters, reward models, dataset snapshots) are stored, how a finished one
is published before its row is written, and how a worker or the web server gets a local copy.

The store is Django's `storages["artifacts"]` (settings.STORAGES, chosen by
HONE_ARTIFACT_STORAGE):

- the filesystem (`ArtifactRootStorage`, under ARTIFACT_ROOT; the default): a finished artifact
  is moved into place with one rename and read in place; every machine mounts the same folder;
- an object store (django-storages' `S3Storage`, any S3-compatible server): a finished artifact
  is uploaded as objects under its key, then a manifest naming each file's sha256; a reader
  gets it through a local cache under ARTIFACT_CACHE, keyed by the manifest's hash, which
  downloads it once and checks every file against the manifest on the way in.

Either way the caller writes the artifact's row only after `artifact_store` returned, and the
row records the key and the manifest's hash: a row always has its artifact, and a reader can
tell when the store no longer holds what the row recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
CHUNK = 1024 * 1024
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ArtifactPathError(ValueError):
    """A recorded artifact path that leads outside the artifact root."""


class ArtifactStoreError(RuntimeError):
    """The object store did not do what was asked (unreachable, no such bucket, access
    denied): nothing was published, or nothing was fetched."""


class ArtifactCorruptError(ArtifactStoreError):
    """What the store holds under a key is not what the artifact's row recorded."""


@dataclass(frozen=True)
class StoredArtifact:
    """A published artifact, as its row records it."""

    # Relative to the store's root: the folder or file under ARTIFACT_ROOT, or the objects'
    # key under HONE_S3_PREFIX.
    key: str
    # sha256 of its manifest (each file's sha256): the identity of its content.
    manifest_sha256: str


class ArtifactRootStorage(FileSystemStorage):
    """The filesystem store: ARTIFACT_ROOT, read when used rather than when the storage is
    built, so that a command or a test that points ARTIFACT_ROOT elsewhere moves the store
    with it."""

    @property
    def base_location(self) -> str:
        return str(self._value_or_setting(self._location, settings.ARTIFACT_ROOT))

    @property
    def location(self) -> str:
        return os.path.abspath(self.base_location)


def artifact_storage() -> Storage:
    return storages["artifacts"]


def _filesystem_root() -> Path | None:
    """The filesystem store's folder, or None when artifacts live in an object store."""
    storage = artifact_storage()
    return Path(storage.location) if isinstance(storage, FileSystemStorage) else None


# --- Keys and paths --------------------------------------------------------------------------


def _outside(relative: str) -> ArtifactPathError:
    return ArtifactPathError(
        f"The artifact path {relative!r} leads outside the artifact root: artifact paths "
        "are relative to ARTIFACT_ROOT and stay inside it."
    )


def artifact_key(relative: str) -> str:
    """The normalised key of an artifact recorded as `relative`; refused when it is absolute
    or climbs out of the store's root with `..`."""
    key = posixpath.normpath(relative.replace("\\", "/"))
    if relative.startswith(("/", "\\")) or key == "." or key == ".." or key.startswith("../"):
        raise _outside(relative)
    return key


def artifact_path(relative: str) -> Path:
    """Where an artifact recorded as `relative` (to ARTIFACT_ROOT) lives on disk, in the
    filesystem store.

    The path is resolved (`..`, symbolic links) and must stay inside the artifact root: a
    row whose path was set to an absolute system file or climbs out with `../` reads and
    writes nothing outside it. With an object store there is no such path: readers call
    `artifact_local`.
    """
    root = _filesystem_root()
    if root is None:
        raise ArtifactStoreError(
            f"Artifacts live in an object store (HONE_ARTIFACT_STORAGE), not under "
            f"ARTIFACT_ROOT: there is no path for {relative!r}; read it with artifact_local."
        )
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise _outside(relative)
    return path


def artifact_work_dir(*, project_id: int) -> Path:
    """A new private folder for a job's output. On the filesystem store it lies inside the
    artifact root, so the finished artifact moves into place with one rename; on an object
    store, inside the local cache, so the uploaded artifact moves into the cache the same way
    (the worker that made it does not download it again)."""
    root = _filesystem_root()
    base = (
        root / f"projects/{project_id}/tmp"
        if root is not None
        else Path(settings.ARTIFACT_CACHE) / "work" / str(project_id)
    )
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=base))


# --- Manifests -------------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_build(source: Path, key: str) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """The manifest of a finished artifact (a folder or one file) and its (name, path) files.

    A folder's files are named by their path inside it; a file artifact has one entry, named
    as the last part of its key."""
    if source.is_file():
        kind, files = "file", [(posixpath.basename(key), source)]
    elif source.is_dir():
        kind = "folder"
        files = sorted(
            (path.relative_to(source).as_posix(), path)
            for path in source.rglob("*")
            if path.is_file()
        )
        if not files:
            raise FileNotFoundError(f"The artifact folder {source} is empty: nothing to store.")
    else:
        raise FileNotFoundError(f"No artifact to store at {source}.")
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "files": {
            name: {"sha256": _file_sha256(path), "size": path.stat().st_size}
            for name, path in files
        },
    }
    return manifest, files


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, sort_keys=True, indent=1) + "\n").encode()


def _manifest_read(data: bytes, key: str) -> dict[str, Any]:
    """A manifest fetched from the store, checked before any name in it becomes a path."""
    problem = f"The manifest of the artifact {key} in the artifact store is not valid"
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise ArtifactCorruptError(f"{problem}: {error}.") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files or manifest.get("kind") not in ("file", "folder"):
        raise ArtifactCorruptError(f"{problem}: it needs a kind and a list of files.")
    for name, entry in files.items():
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
            raise ArtifactCorruptError(f"{problem}: the file name {name!r} is not allowed.")
        if not (isinstance(entry, dict) and SHA256_HEX.fullmatch(str(entry.get("sha256")))):
            raise ArtifactCorruptError(f"{problem}: {name!r} has no sha256.")
    if manifest["kind"] == "file" and list(files) != [posixpath.basename(key)]:
        raise ArtifactCorruptError(f"{problem}: a file artifact names one file, its own.")
    return manifest


def _object_key(key: str, kind: str, name: str) -> str:
    return key if kind == "file" else f"{key}/{name}"


# --- Publishing ------------------------------------------------------------------------------


def artifact_store(*, source: Path, key: str) -> StoredArtifact:
    """Publish a finished artifact, a folder (an adapter) or a file (a snapshot), under `key`;
    returns what its row records. Call it before writing the row.

    Filesystem store: `source` is moved into place with one rename, replacing what was there
    (a crash before it leaves nothing). Object store: each file is uploaded, then the
    manifest; when an upload fails, what was uploaded is deleted and ArtifactStoreError says
    what failed: nothing is published, so the caller writes no row. After a successful
    upload `source` moves into the local cache, so this worker reads it without a download.
    """
    key = artifact_key(key)
    manifest, files = _manifest_build(source, key)
    data = _manifest_bytes(manifest)
    stored = StoredArtifact(key=key, manifest_sha256=hashlib.sha256(data).hexdigest())
    root = _filesystem_root()
    if root is not None:
        final = artifact_path(key)
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        final.parent.mkdir(parents=True, exist_ok=True)
        source.replace(final)
        return stored

    storage = artifact_storage()
    uploaded: list[str] = []
    try:
        for name, path in files:
            uploaded.append(_object_key(key, manifest["kind"], name))
            with path.open("rb") as handle:
                _save(storage, uploaded[-1], handle)
        uploaded.append(key + MANIFEST_SUFFIX)
        _save(storage, uploaded[-1], io.BytesIO(data))
    except Exception as error:
        for name in reversed(uploaded):
            with contextlib.suppress(Exception):  # the store may be down: best effort
                storage.delete(name)
        raise ArtifactStoreError(
            f"Uploading the artifact {key} to the artifact store failed, so nothing was "
            f"published: {type(error).__name__}: {error}"
        ) from error
    _cache_adopt(source, stored)
    return stored


def _save(storage: Storage, name: str, handle: IO[bytes]) -> None:
    saved = storage.save(name, File(handle))
    if saved != name:  # a store that renames instead of overwriting would lose the artifact
        storage.delete(saved)
        raise ArtifactStoreError(
            f"The artifact store saved {name} as {saved}: it must overwrite (for S3Storage, "
            "file_overwrite=True)."
        )


def artifact_exists(*, key: str, name: str) -> bool:
    """Whether the artifact under `key` has a file `name` (a folder artifact's file)."""
    key = artifact_key(key)
    root = _filesystem_root()
    if root is not None:
        return (artifact_path(key) / name).is_file()
    try:
        return artifact_storage().exists(f"{key}/{name}")
    except Exception as error:
        raise ArtifactStoreError(
            f"Asking the artifact store for {key}/{name} failed: {type(error).__name__}: {error}"
        ) from error


def artifact_delete(*, artifact: StoredArtifact) -> None:
    """Take a published artifact away again (its row could not be written). Best effort on
    an object store: what stays behind without its manifest is never read."""
    key = artifact_key(artifact.key)
    root = _filesystem_root()
    if root is not None:
        path = artifact_path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return
    storage = artifact_storage()
    with contextlib.suppress(Exception):
        with storage.open(key + MANIFEST_SUFFIX, "rb") as handle:
            manifest = _manifest_read(handle.read(), key)
        storage.delete(key + MANIFEST_SUFFIX)  # first: the artifact is gone for every reader
        for name in manifest["files"]:
            storage.delete(_object_key(key, manifest["kind"], name))
    shutil.rmtree(_cache_entry(artifact.manifest_sha256), ignore_errors=True)


# --- Reading through the local cache ---------------------------------------------------------


def _cache_entry(manifest_sha256: str) -> Path:
    if not SHA256_HEX.fullmatch(manifest_sha256):
        raise ArtifactStoreError(
            f"{manifest_sha256!r} is not a manifest hash (64 hex digits): the artifact's row "
            "records none, so it cannot be read from the object store."
        )
    return Path(settings.ARTIFACT_CACHE) / manifest_sha256


def _cache_adopt(source: Path, stored: StoredArtifact) -> None:
    """Keep what was just uploaded as its cache entry (it is what the manifest describes)."""
    entry = _cache_entry(stored.manifest_sha256)
    if entry.exists():
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".adopt-"))
    try:
        source.replace(staging / posixpath.basename(stored.key))
        with contextlib.suppress(OSError):  # another process cached it meanwhile
            staging.rename(entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def artifact_local(*, key: str, manifest_sha256: str) -> Path:
    """A local path to read the artifact a row records as (`key`, `manifest_sha256`).

    Filesystem store: the artifact in place. Object store: its copy in the local cache,
    downloaded on first use into a private folder, every file checked against the manifest,
    then moved into place under the manifest's hash; a manifest or a file whose sha256
    differs from what was recorded raises ArtifactCorruptError and nothing is kept. A missing
    artifact raises FileNotFoundError.
    """
    key = artifact_key(key)
    if _filesystem_root() is not None:
        return artifact_path(key)
    entry = _cache_entry(manifest_sha256)
    name = posixpath.basename(key)
    if entry.is_dir():
        return entry / name
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".fetch-"))
    try:
        _fetch(artifact_storage(), key, manifest_sha256, staging / name)
        try:
            staging.rename(entry)
        except OSError:
            if not entry.is_dir():  # not a concurrent download that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry / name


def _fetch(storage: Storage, key: str, manifest_sha256: str, target: Path) -> None:
    try:
        with storage.open(key + MANIFEST_SUFFIX, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"The artifact store holds no artifact {key}.") from None
    except Exception as error:
        raise _read_failed(key, error) from error
    found = hashlib.sha256(data).hexdigest()
    if found != manifest_sha256:
        raise ArtifactCorruptError(
            f"The artifact {key} in the artifact store has manifest sha256 {found}, not the "
            f"{manifest_sha256} its row recorded: the store holds another artifact under that "
            "key. It was not used."
        )
    manifest = _manifest_read(data, key)
    for name, entry in manifest["files"].items():
        object_key = _object_key(key, manifest["kind"], name)
        path = target if manifest["kind"] == "file" else target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        try:
            with storage.open(object_key, "rb") as source, path.open("wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            raise ArtifactCorruptError(
                f"The artifact store has lost {object_key}, a file of the artifact {key}. "
                "It was not used."
            ) from None
        except Exception as error:
            raise _read_failed(key, error) from error
        if digest.hexdigest() != entry["sha256"]:
            raise ArtifactCorruptError(
                f"{object_key} in the artifact store has sha256 {digest.hexdigest()}, not the "
                f"{entry['sha256']} of its manifest: the download was refused and not kept."
            )


def _read_failed(key: str, error: Exception) -> ArtifactStoreError:
    return ArtifactStoreError(
        f"Reading the artifact {key} from the artifact store failed: "
        f"{type(error).__name__}: {error}"
    )

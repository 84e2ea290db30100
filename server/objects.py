"""The object store: artifacts (proposal attachments, archived transcripts, canon
exports, backups) in a folder under ``var/objects`` by default, or in any S3 server
(MinIO, SeaweedFS, ...) at ``BOTARENA_S3_URL`` through the ``minio`` client.

Both kinds put an object in whole or not at all: the folder writes a temporary file
and renames it; S3 makes an object visible only when its (multipart) upload completes.
Downloads land in a temporary file that is renamed only when complete. Every failure
is an :class:`~botarena.server.errors.ObjectStoreError` of its kind (``ObjectNotFound``,
``ObjectUnavailable``, ``ObjectRefused``) with a message that names the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import urlparse

from botarena.server.errors import ObjectNotFound, ObjectRefused, ObjectUnavailable
from botarena.server.files import copy_atomic
from botarena.server.settings import ObjectStoreSettings

if TYPE_CHECKING:
    import urllib3

PART_SIZE = 8 * 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ObjectRefused(f"not an object key: {key!r}")
    return key


class ObjectStore(Protocol):
    where: str

    def put(self, key: str, source: Path) -> ObjectInfo: ...

    def get(self, key: str, dest: Path) -> ObjectInfo: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...


class FolderStore:
    """Objects as files under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, source: Path) -> ObjectInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_atomic(source, target)
        return ObjectInfo(key, target.stat().st_size)

    def get(self, key: str, dest: Path) -> ObjectInfo:
        source = self._path(key)
        if not source.is_file():
            raise ObjectNotFound(f"no object {key} in {self.where}")
        copy_atomic(source, dest)
        return ObjectInfo(key, dest.stat().st_size)

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        return ObjectInfo(key, path.stat().st_size) if path.is_file() else None

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.exists():
            return []
        found = [
            ObjectInfo(p.relative_to(self.root).as_posix(), p.stat().st_size)
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.name.endswith(".partial")
        ]
        return [o for o in found if o.key.startswith(prefix)]

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Store:
    """Objects in one bucket of an S3 server (made if missing)."""

    def __init__(self, url: str, access_key: str, secret_key: str, bucket: str) -> None:
        from minio import Minio

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ObjectRefused(f"BOTARENA_S3_URL must be http(s)://host:port, not {url}")
        self.where = f"{url.rstrip('/')}/{bucket}"
        self.bucket = bucket
        self.client = Minio(
            parsed.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parsed.scheme == "https",
            http_client=_http_client(),
        )

    def _call(self, what: str, action: Callable[[], T]) -> T:
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            return action()
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(f"no object {what} in {self.where}") from None
            raise ObjectRefused(f"{self.where} refused {what}: {exc.code}") from None
        except (HTTPError, OSError) as exc:
            raise ObjectUnavailable(
                f"{self.where} did not answer ({what}): {type(exc).__name__}"
            ) from None

    def ensure_bucket(self) -> None:
        def make() -> None:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)

        self._call("the bucket", make)

    def put(self, key: str, source: Path) -> ObjectInfo:
        _check_key(key)
        self._call(
            key, lambda: self.client.fput_object(self.bucket, key, str(source), part_size=PART_SIZE)
        )
        info = self.stat(key)
        if info is None:
            raise ObjectUnavailable(f"{key} is not in {self.where} after its upload")
        return info

    def get(self, key: str, dest: Path) -> ObjectInfo:
        _check_key(key)
        self._call(key, lambda: self.client.fget_object(self.bucket, key, str(dest)))
        return ObjectInfo(key, dest.stat().st_size)

    def stat(self, key: str) -> ObjectInfo | None:
        _check_key(key)
        try:
            found = self._call(key, lambda: self.client.stat_object(self.bucket, key))
        except ObjectNotFound:
            return None
        assert found.size is not None  # stat_object reads it from Content-Length: always set
        return ObjectInfo(key, int(found.size))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        objects = self._call(
            "the list",
            lambda: list(self.client.list_objects(self.bucket, prefix=prefix, recursive=True)),
        )
        return [ObjectInfo(o.object_name, int(o.size)) for o in objects]

    def delete(self, key: str) -> None:
        self._call(key, lambda: self.client.remove_object(self.bucket, _check_key(key)))


def _http_client() -> urllib3.PoolManager:
    """Few, quick retries: a server that is gone should fail a call in seconds."""
    import urllib3

    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=60),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


def open_objects(settings: ObjectStoreSettings) -> ObjectStore:
    """The configured object store: S3 when ``BOTARENA_S3_URL`` is set, else the folder."""
    if settings.s3_url:
        store = S3Store(
            settings.s3_url, settings.s3_access_key, settings.s3_secret_key, settings.s3_bucket
        )
        store.ensure_bucket()
        return store
    return FolderStore(settings.var_dir / "objects")

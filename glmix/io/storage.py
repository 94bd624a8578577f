"""One storage interface for local paths and ``hdfs://`` URIs, with atomic publishing.

Every stage reads and writes through this module, so a stage never cares whether it runs on a
laptop or on a cluster. HDFS is reached through WebHDFS (the ``hdfs`` package), configured from
``HADOOP_CONF_DIR`` when present. Outputs are published atomically: written under a temporary
sibling, renamed into place, then marked with ``_SUCCESS``.
"""

from __future__ import annotations

import builtins
import getpass
import io
import os
import posixpath
import shutil
import tempfile
import uuid
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import urlparse

from glmix.errors import StorageError

T = TypeVar("T")

SUCCESS_MARKER = "_SUCCESS"


@dataclass(frozen=True)
class FileInfo:
    """One entry of a directory listing."""

    uri: str
    name: str
    is_dir: bool
    size: int


def is_hidden(name: str) -> bool:
    """Hadoop's convention: names starting with '_' or '.' are metadata, not data."""
    return name.startswith(("_", "."))


def join(base: str, *parts: str) -> str:
    """Join path components of a local path or URI with '/'."""
    return posixpath.join(base, *parts) if "://" in base else os.path.join(base, *parts)


class Storage(ABC):
    """The file operations every stage needs; methods take full URIs or local paths."""

    @abstractmethod
    def exists(self, uri: str) -> bool: ...

    @abstractmethod
    def is_dir(self, uri: str) -> bool: ...

    @abstractmethod
    def list(self, uri: str) -> list[FileInfo]:
        """Entries of a directory, sorted by name."""

    @abstractmethod
    def file_size(self, uri: str) -> int:
        """Bytes in one file."""

    @abstractmethod
    def open_read(self, uri: str) -> BinaryIO:
        """A binary stream; use as a context manager."""

    @abstractmethod
    def open_write(self, uri: str) -> BinaryIO:
        """A binary stream that creates or replaces the file; use as a context manager."""

    @abstractmethod
    def makedirs(self, uri: str) -> None: ...

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Remove a file or a whole directory; a missing path is not an error."""

    @abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Move src to dst, which must not exist."""

    def replace_file(self, src: str, dst: str) -> None:
        """Move the file src onto dst, replacing it. Not atomic here (dst is briefly absent: WebHDFS
        renames do not overwrite); a local file system replaces in one step."""
        if self.exists(dst):
            self.delete(dst)
        self.rename(src, dst)

    def read_bytes(self, uri: str) -> bytes:
        with self.open_read(uri) as stream:
            return stream.read()

    @abstractmethod
    def read_tail(self, uri: str, length: int) -> bytes:
        """The last ``length`` bytes of a file (all of it if shorter), without reading the rest."""

    @abstractmethod
    def create_new(self, uri: str, data: bytes) -> bool:
        """Write a file only if no file is at ``uri`` yet, atomically against other writers: True if
        this call created it, False if it existed (what locks and version numbers are built on)."""

    def write_bytes(self, uri: str, data: bytes) -> None:
        with self.open_write(uri) as stream:
            stream.write(data)

    @abstractmethod
    def append_bytes(self, uri: str, data: bytes) -> None:
        """Add to the end of an existing file; the file never disappears meanwhile (as a rewrite
        through WebHDFS would), so readers always find it."""

    def data_files(self, uri: str, suffix: str = "", skip_empty: bool = False) -> builtins.list[str]:
        """The data files of a file or directory (recursively), skipping hidden entries and, with
        ``skip_empty``, files of zero bytes (some writers leave them for a task without output)."""
        return [entry.uri for entry in self.data_file_sizes(uri, suffix) if entry.size or not skip_empty]

    def data_file_sizes(self, uri: str, suffix: str = "") -> builtins.list[FileInfo]:
        """:meth:`data_files` with their sizes (from the directory listings)."""
        if not self._is_existing_dir(uri):
            return [FileInfo(uri, uri.rstrip("/").rsplit("/", 1)[-1], False, self.file_size(uri))]
        return self._data_entries(uri, suffix)

    def size(self, uri: str) -> int:
        """Bytes in the data files of a file or directory (what :meth:`data_files` lists); the
        sizes come with the directory listings, not from one more call per file."""
        if not self._is_existing_dir(uri):
            return self.file_size(uri)
        return sum(entry.size for entry in self._data_entries(uri, ""))

    def _is_existing_dir(self, uri: str) -> bool:
        if not self.exists(uri):
            raise StorageError(f"{uri}: no such file or directory")
        return self.is_dir(uri)

    def _data_entries(self, directory: str, suffix: str) -> builtins.list[FileInfo]:
        found: builtins.list[FileInfo] = []
        for entry in self.list(directory):
            if is_hidden(entry.name):
                continue
            if entry.is_dir:
                found.extend(self._data_entries(entry.uri, suffix))
            elif entry.name.endswith(suffix):
                found.append(entry)
        return found


class LocalStorage(Storage):
    """The local filesystem; accepts plain paths and file:// URIs."""

    @staticmethod
    def _path(uri: str) -> Path:
        return Path(urlparse(uri).path if uri.startswith("file://") else uri)

    def exists(self, uri: str) -> bool:
        return self._path(uri).exists()

    def is_dir(self, uri: str) -> bool:
        return self._path(uri).is_dir()

    def list(self, uri: str) -> list[FileInfo]:
        path = self._path(uri)
        if not path.is_dir():
            raise StorageError(f"{uri}: not a directory")
        found = []
        for p in sorted(path.iterdir()):
            try:   # an entry another process removes meanwhile (a spool file) is not listed
                found.append(FileInfo(uri=join(uri, p.name), name=p.name, is_dir=p.is_dir(),
                                      size=0 if p.is_dir() else p.stat().st_size))
            except FileNotFoundError:
                continue
        return found

    def file_size(self, uri: str) -> int:
        try:
            return self._path(uri).stat().st_size
        except FileNotFoundError:
            raise StorageError(f"{uri}: no such file") from None

    def open_read(self, uri: str) -> BinaryIO:
        try:
            return open(self._path(uri), "rb")
        except OSError as exc:
            raise StorageError(f"{uri}: cannot read: {exc.strerror}") from exc

    def read_tail(self, uri: str, length: int) -> bytes:
        with self.open_read(uri) as stream:
            stream.seek(max(0, self._path(uri).stat().st_size - length))
            return stream.read()

    def open_write(self, uri: str) -> BinaryIO:
        path = self._path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return open(path, "wb")
        except OSError as exc:
            raise StorageError(f"{uri}: cannot write: {exc.strerror}") from exc

    def makedirs(self, uri: str) -> None:
        try:
            self._path(uri).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{uri}: cannot create directory: {exc.strerror}") from exc

    def delete(self, uri: str) -> None:
        path = self._path(uri)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()

    def rename(self, src: str, dst: str) -> None:
        if self.exists(dst):
            raise StorageError(f"{dst}: cannot rename {src} onto an existing path")
        os.rename(self._path(src), self._path(dst))

    def replace_file(self, src: str, dst: str) -> None:
        os.replace(self._path(src), self._path(dst))   # atomic: readers see the old file or the new one

    def append_bytes(self, uri: str, data: bytes) -> None:
        try:
            with open(self._path(uri), "ab") as stream:
                stream.write(data)
        except OSError as exc:
            raise StorageError(f"{uri}: cannot append: {exc.strerror}") from exc

    def create_new(self, uri: str, data: bytes) -> bool:
        path = self._path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        spool = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        spool.write_bytes(data)
        try:
            os.link(spool, path)   # atomic, fails if the path exists, and the file appears whole
            return True
        except FileExistsError:
            return False
        finally:
            spool.unlink()


@dataclass(frozen=True)
class HdfsSettings:
    """Where WebHDFS listens and as whom to act."""

    webhdfs_url: str
    user: str

    @classmethod
    def from_environment(cls, authority: str = "") -> HdfsSettings:
        """Explicit env vars first, then HADOOP_CONF_DIR, then the NameNode's default HTTP port."""
        user = os.environ.get("HADOOP_USER_NAME") or getpass.getuser()
        url = os.environ.get("GLMIX_WEBHDFS_URL")
        if url:
            return cls(url, user)
        conf = _hadoop_conf()
        http_address = conf.get("dfs.namenode.http-address")
        if http_address and not http_address.startswith("0.0.0.0"):
            return cls(f"http://{http_address}", user)
        host = authority.split(":")[0] or urlparse(conf.get("fs.defaultFS", "")).hostname
        if not host:
            raise StorageError("hdfs:// path without a namenode: set HADOOP_CONF_DIR or GLMIX_WEBHDFS_URL")
        port = http_address.rsplit(":", 1)[1] if http_address else "9870"
        return cls(f"http://{host}:{port}", user)


def _hadoop_conf() -> dict[str, str]:
    """Properties of core-site.xml and hdfs-site.xml in HADOOP_CONF_DIR (empty if unset)."""
    conf_dir = os.environ.get("HADOOP_CONF_DIR")
    props: dict[str, str] = {}
    if not conf_dir:
        return props
    for name in ("core-site.xml", "hdfs-site.xml"):
        path = Path(conf_dir) / name
        if not path.exists():
            continue
        for prop in ET.parse(path).getroot().iter("property"):
            key, value = prop.findtext("name"), prop.findtext("value")
            if key and value is not None:
                props[key.strip()] = value.strip()
    return props


class HdfsStorage(Storage):
    """HDFS through WebHDFS. URIs look like hdfs://namenode:port/path or hdfs:///path."""

    def __init__(self, settings: HdfsSettings) -> None:
        from hdfs import InsecureClient

        self.settings = settings
        self._client = InsecureClient(settings.webhdfs_url, user=settings.user)

    @staticmethod
    def _path(uri: str) -> str:
        return urlparse(uri).path or "/"

    def _call(self, uri: str, action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a client call, turning network and HDFS errors into one-line StorageErrors."""
        from hdfs.util import HdfsError
        from requests.exceptions import RequestException

        try:
            return fn(*args, **kwargs)
        except HdfsError as exc:
            raise StorageError(f"{uri}: cannot {action}: {exc.message.splitlines()[0]}") from exc
        except RequestException as exc:
            raise StorageError(
                f"{uri}: cannot {action}: namenode unreachable at {self.settings.webhdfs_url} "
                f"({type(exc).__name__})") from exc

    def _status(self, uri: str) -> dict[str, Any] | None:
        return self._call(uri, "stat", self._client.status, self._path(uri), strict=False)

    def exists(self, uri: str) -> bool:
        return self._status(uri) is not None

    def world_readable(self, uri: str) -> bool:
        """Whether everyone may read the file: it is readable by others, every directory above it
        searchable by others (what YARN asks of a resource in its public cache)."""
        path = PurePosixPath(self._path(uri))
        for part, needed in [(path, 0o004), *((parent, 0o001) for parent in path.parents)]:
            status = self._call(uri, "stat", self._client.status, str(part), strict=False)
            if status is None or not int(status["permission"], 8) & needed:
                return False
        return True

    def is_dir(self, uri: str) -> bool:
        status = self._status(uri)
        return status is not None and status["type"] == "DIRECTORY"

    def list(self, uri: str) -> list[FileInfo]:
        entries = self._call(uri, "list", self._client.list, self._path(uri), status=True)
        return [FileInfo(uri=join(uri, name), name=name, is_dir=st["type"] == "DIRECTORY",
                         size=int(st.get("length", 0)))
                for name, st in sorted(entries)]

    def file_size(self, uri: str) -> int:
        status = self._status(uri)
        if status is None:
            raise StorageError(f"{uri}: no such file")
        return int(status["length"])

    def open_read(self, uri: str) -> BinaryIO:
        # Whole-file read: part files are bounded in size, and Avro readers need read(n) + seek.
        data = self._call(uri, "read", _read_all, self._client, self._path(uri))
        return io.BytesIO(data)

    def read_tail(self, uri: str, length: int) -> bytes:
        status = self._status(uri)
        if status is None:
            raise StorageError(f"{uri}: cannot read: no such file")
        offset = max(0, int(status["length"]) - length)
        return self._call(uri, "read", _read_range, self._client, self._path(uri), offset, length)

    def open_write(self, uri: str) -> BinaryIO:
        return cast(BinaryIO, _HdfsWriter(self, uri))   # the part of BinaryIO writers use

    def makedirs(self, uri: str) -> None:
        self._call(uri, "create directory", self._client.makedirs, self._path(uri))

    def delete(self, uri: str) -> None:
        self._call(uri, "delete", self._client.delete, self._path(uri), recursive=True)

    def rename(self, src: str, dst: str) -> None:
        if self.exists(dst):
            raise StorageError(f"{dst}: cannot rename {src} onto an existing path")
        self._call(src, "rename", self._client.rename, self._path(src), self._path(dst))

    def append_bytes(self, uri: str, data: bytes) -> None:
        self._call(uri, "append", self._client.write, self._path(uri), data=data, append=True)

    def create_new(self, uri: str, data: bytes) -> bool:
        from hdfs.util import HdfsError

        try:   # the namenode creates a path at most once (WebHDFS CREATE with overwrite=false)
            self._client.write(self._path(uri), data=data, overwrite=False)
            return True
        except HdfsError as exc:
            # exists, or another client is creating it right now (the namenode's file lease)
            if any(m in str(exc) for m in ("FileAlreadyExistsException", "already exists",
                                           "AlreadyBeingCreatedException", "lease is currently owned")):
                return False
            raise StorageError(f"{uri}: cannot create: {exc.message.splitlines()[0]}") from exc


def _read_all(client: Any, path: str) -> bytes:
    with client.read(path) as reader:
        return reader.read()


def _read_range(client: Any, path: str, offset: int, length: int) -> bytes:
    with client.read(path, offset=offset, length=length) as reader:
        return reader.read()


class _HdfsWriter:
    """Buffers writes in a local spool file and uploads on close, so a failed writer uploads nothing."""

    def __init__(self, storage: HdfsStorage, uri: str) -> None:
        self._storage, self._uri = storage, uri
        self._spool = tempfile.TemporaryFile()

    def write(self, data: bytes) -> int:
        return self._spool.write(data)

    def flush(self) -> None:
        self._spool.flush()

    def tell(self) -> int:
        return self._spool.tell()

    def seekable(self) -> bool:
        return False

    def __enter__(self) -> _HdfsWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            if exc_type is None:
                self._spool.seek(0)
                st = self._storage
                st._call(self._uri, "write", st._client.write, st._path(self._uri),
                         data=self._spool, overwrite=True)
        finally:
            self._spool.close()


def qualified(uri: str) -> str:
    """A URI with an explicit scheme: engines such as Spark resolve bare paths against fs.defaultFS."""
    return uri if "://" in uri else Path(uri).resolve().as_uri()


def with_namenode(uri: str) -> str:
    """``hdfs:///path`` with the default file system's namenode spelled out (``hdfs://host:port/path``),
    the form Spark gives YARN: a node caches a localized file under its URL, so two spellings of one
    file are downloaded and unpacked twice."""
    default_fs = _hadoop_conf().get("fs.defaultFS", "")
    if uri.startswith("hdfs:///") and default_fs.startswith("hdfs://"):
        return default_fs.rstrip("/") + uri.removeprefix("hdfs://")
    return uri


def storage_for(uri: str) -> Storage:
    """The backend for a local path, file:// URI or hdfs:// URI."""
    scheme = urlparse(uri).scheme if "://" in uri else ""
    if scheme in ("", "file"):
        return LocalStorage()
    if scheme == "hdfs":
        return HdfsStorage(HdfsSettings.from_environment(urlparse(uri).netloc))
    raise StorageError(f"{uri}: unsupported scheme '{scheme}' (use a local path, file:// or hdfs://)")


def _sibling(uri: str, prefix: str) -> str:
    parent, name = posixpath.split(uri.rstrip("/")) if "://" in uri else os.path.split(uri.rstrip("/"))
    return join(parent, f"{prefix}{name}-{uuid.uuid4().hex[:8]}")


@contextmanager
def publish_atomically(dest: str, *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary sibling directory to write into; on success it replaces ``dest``.

    The temporary directory is removed if the body raises, so a failed stage leaves the
    previous output (if any) untouched. On success: the old output is moved aside, the new one
    renamed into place, ``_SUCCESS`` written, and the old one deleted.
    """
    storage = storage_for(dest)
    if storage.exists(dest) and not overwrite:
        raise StorageError(f"{dest}: output exists and overwrite is off")
    tmp = _sibling(dest, "._tmp-")
    storage.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        storage.delete(tmp)
        raise
    old = None
    if storage.exists(dest):
        old = _sibling(dest, "._old-")
        storage.rename(dest, old)
    storage.rename(tmp, dest)
    storage.write_bytes(join(dest, SUCCESS_MARKER), b"")
    if old is not None:
        storage.delete(old)


def write_file_atomically(dest: str, data: bytes) -> None:
    """Write a single file (a report, a small JSON) so readers never see half of it."""
    storage = storage_for(dest)
    tmp = _sibling(dest, "._tmp-")
    storage.write_bytes(tmp, data)
    storage.replace_file(tmp, dest)


def copy_tree(src: str, dst: str) -> None:
    """Copy a file or directory tree between any two storages (e.g. local -> HDFS)."""
    source, target = storage_for(src), storage_for(dst)
    if not source.is_dir(src):
        target.write_bytes(dst, source.read_bytes(src))
        return
    target.makedirs(dst)
    for entry in source.list(src):
        copy_tree(entry.uri, join(dst, entry.name))


def is_published(uri: str) -> bool:
    """True when a directory output was completely published (its _SUCCESS marker exists)."""
    return storage_for(uri).exists(join(uri, SUCCESS_MARKER))

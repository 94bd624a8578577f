"""The storage layer, on local disk and (integration) on real HDFS through WebHDFS."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from glmix.errors import StorageError
from glmix.io.storage import (
    SUCCESS_MARKER,
    HdfsSettings,
    HdfsStorage,
    is_published,
    join,
    publish_atomically,
    storage_for,
    write_file_atomically,
)


def test_write_read_list_delete(storage_root: str) -> None:
    storage = storage_for(storage_root)
    path = join(storage_root, "a", "b.bin")
    storage.write_bytes(path, b"hello")
    assert storage.exists(path) and not storage.is_dir(path)
    assert storage.read_bytes(path) == b"hello"
    assert [e.name for e in storage.list(join(storage_root, "a"))] == ["b.bin"]
    assert storage.list(join(storage_root, "a"))[0].size == 5
    storage.delete(join(storage_root, "a"))
    assert not storage.exists(path)


def test_read_tail_reads_only_the_end(storage_root: str) -> None:
    storage = storage_for(storage_root)
    path = join(storage_root, "t.bin")
    storage.write_bytes(path, b"0123456789")
    assert storage.read_tail(path, 3) == b"789"
    assert storage.read_tail(path, 100) == b"0123456789"


def test_data_files_skip_hidden_and_recurse(storage_root: str) -> None:
    storage = storage_for(storage_root)
    for name in ["x/part-0.avro", "x/_SUCCESS", "x/.hidden.avro", "x/sub/part-1.avro", "x/notes.txt"]:
        storage.write_bytes(join(storage_root, name), b"1")
    found = storage.data_files(join(storage_root, "x"), suffix=".avro")
    assert [f.rsplit("/", 1)[1] for f in found] == ["part-0.avro", "part-1.avro"]


def test_size_counts_data_files_only(storage_root: str) -> None:
    storage = storage_for(storage_root)
    for name, data in [("x/part-0.avro", b"12345"), ("x/_SUCCESS", b"1"), ("x/sub/part-1.avro", b"123")]:
        storage.write_bytes(join(storage_root, name), data)
    assert storage.size(join(storage_root, "x")) == 8
    assert storage.size(join(storage_root, "x", "part-0.avro")) == 5
    with pytest.raises(StorageError, match="part-9.avro"):
        storage.file_size(join(storage_root, "x", "part-9.avro"))


def test_publish_atomically_replaces_and_marks_success(storage_root: str) -> None:
    storage = storage_for(storage_root)
    dest = join(storage_root, "out")
    for version in (b"v1", b"v2"):
        with publish_atomically(dest) as tmp:
            storage.write_bytes(join(tmp, "data"), version)
            assert not storage.exists(join(dest, "data")) or storage.read_bytes(join(dest, "data")) != version
        assert storage.read_bytes(join(dest, "data")) == version
        assert is_published(dest)
    assert sorted(e.name for e in storage.list(storage_root)) == ["out"]


def test_failed_publish_keeps_previous_output_and_leaves_no_temp(storage_root: str) -> None:
    storage = storage_for(storage_root)
    dest = join(storage_root, "out")
    with publish_atomically(dest) as tmp:
        storage.write_bytes(join(tmp, "data"), b"good")
    with pytest.raises(RuntimeError, match="injected"), publish_atomically(dest) as tmp:
        storage.write_bytes(join(tmp, "data"), b"half")
        raise RuntimeError("injected failure")
    assert storage.read_bytes(join(dest, "data")) == b"good"
    assert storage.exists(join(dest, SUCCESS_MARKER))
    assert [e.name for e in storage.list(storage_root)] == ["out"]


def test_failed_first_publish_leaves_nothing(storage_root: str) -> None:
    storage = storage_for(storage_root)
    dest = join(storage_root, "never")
    with pytest.raises(ValueError), publish_atomically(dest) as tmp:
        storage.write_bytes(join(tmp, "part"), b"x")
        raise ValueError
    assert not storage.exists(dest)
    assert storage.list(storage_root) == []


def test_publish_without_overwrite_refuses(storage_root: str) -> None:
    dest = join(storage_root, "out")
    with publish_atomically(dest):
        pass
    with pytest.raises(StorageError, match="overwrite is off"), publish_atomically(dest, overwrite=False):
        pass


def test_write_file_atomically(storage_root: str) -> None:
    path = join(storage_root, "report.json")
    write_file_atomically(path, b"{}")
    write_file_atomically(path, b"{\"a\": 1}")
    assert storage_for(path).read_bytes(path) == b"{\"a\": 1}"
    assert [e.name for e in storage_for(storage_root).list(storage_root)] == ["report.json"]


def test_missing_file_error_names_path(storage_root: str) -> None:
    missing = join(storage_root, "nope.avro")
    with pytest.raises(StorageError, match="nope.avro"):
        storage_for(missing).read_bytes(missing)
    with pytest.raises(StorageError, match="no such file"):
        storage_for(missing).data_files(missing)


def test_unsupported_scheme() -> None:
    with pytest.raises(StorageError, match="unsupported scheme 's3'"):
        storage_for("s3://bucket/key")


def test_unreachable_namenode_is_one_line_error() -> None:
    storage = HdfsStorage(HdfsSettings("http://127.0.0.1:1", "nobody"))
    with pytest.raises(StorageError, match=r"namenode unreachable at http://127.0.0.1:1") as info:
        storage.exists("hdfs:///tmp/x")
    assert "\n" not in str(info.value)


def test_hdfs_settings_from_hadoop_conf(tmp_path, monkeypatch) -> None:
    (tmp_path / "hdfs-site.xml").write_text(
        "<configuration><property><name>dfs.namenode.http-address</name><value>127.0.0.1:50070</value>"
        "</property></configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    monkeypatch.delenv("GLMIX_WEBHDFS_URL", raising=False)
    monkeypatch.setenv("HADOOP_USER_NAME", "alice")
    assert HdfsSettings.from_environment() == HdfsSettings("http://127.0.0.1:50070", "alice")
    monkeypatch.setenv("GLMIX_WEBHDFS_URL", "http://nn:1234")
    assert HdfsSettings.from_environment().webhdfs_url == "http://nn:1234"


def test_world_readable_asks_every_directory_above(hdfs_root: str) -> None:
    """What decides whether YARN may keep a shipped archive in a node's public cache."""
    from hdfs import InsecureClient

    storage = storage_for(hdfs_root)
    assert isinstance(storage, HdfsStorage)
    uri = f"{hdfs_root}/envs/env.tar.gz"
    storage.write_bytes(uri, b"packed")
    assert storage.world_readable(uri)
    client = InsecureClient(storage.settings.webhdfs_url, user=storage.settings.user)
    client.set_permission(urlparse(f"{hdfs_root}/envs").path, "700")
    assert not storage.world_readable(uri)
    client.set_permission(urlparse(f"{hdfs_root}/envs").path, "755")
    client.set_permission(urlparse(uri).path, "600")
    assert not storage.world_readable(uri)

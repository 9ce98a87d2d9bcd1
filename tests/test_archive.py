"""The archive files kernels and compiled graphs are saved in: digest, limits, atomic writes."""

import gzip
import io
import json
import os
import tarfile

import pytest

from tpc import archive
from tpc.archive import DIGEST, MANIFEST, read_archive, read_manifest, write_archive

MEMBERS = {MANIFEST: b'{"format": "test"}', "kernel.so": b"\x7fELF native code"}


def _raw_tar(path, members, sizes=None):
    """A tar file with exactly ``members`` (no digest added); ``sizes`` overrides header sizes."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    if sizes:
        raw = bytearray(path.read_bytes())
        for name, size in sizes.items():
            header = raw.index(name.encode() + b"\0")
            raw[header + 124:header + 136] = f"{size:011o}\0".encode()
            raw[header + 148:header + 156] = b" " * 8
            raw[header + 148:header + 155] = f"{sum(raw[header:header + 512]):06o}\0".encode()
        path.write_bytes(bytes(raw))


def test_members_round_trip_with_a_digest_over_all_of_them(tmp_path):
    path = tmp_path / "file.tpc"
    write_archive(path, MEMBERS)
    with tarfile.open(path) as tar:
        assert tar.getnames() == [*MEMBERS, DIGEST]
    assert read_archive(path, (MANIFEST, "kernel.so")) == MEMBERS
    for name in MEMBERS:
        changed = dict(MEMBERS)
        changed[name] = changed[name][:-1] + bytes([changed[name][-1] ^ 1])
        with tarfile.open(path) as tar:
            digest = tar.extractfile(DIGEST).read()
        _raw_tar(tmp_path / "changed.tpc", {**changed, DIGEST: digest})
        with pytest.raises(ValueError, match="changed.tpc: digest does not match the contents"):
            read_archive(tmp_path / "changed.tpc")
    renamed = {"kernel.sO" if name == "kernel.so" else name: data for name, data in MEMBERS.items()}
    _raw_tar(tmp_path / "renamed.tpc", {**renamed, DIGEST: digest})
    with pytest.raises(ValueError, match="digest does not match"):
        read_archive(tmp_path / "renamed.tpc")
    _raw_tar(tmp_path / "undigested.tpc", MEMBERS)
    with pytest.raises(ValueError, match=f"undigested.tpc: not a tpc file of this kind \\(no {DIGEST} member\\)"):
        read_archive(tmp_path / "undigested.tpc")
    with pytest.raises(ValueError, match="reserved"):
        write_archive(tmp_path / "x.tpc", {**MEMBERS, DIGEST: b""})


def test_a_member_whose_header_claims_too_much_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.tpc"
    _raw_tar(path, {**MEMBERS, "huge.bin": b"x" * 100}, sizes={"huge.bin": 2 << 30})
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=f"big.tpc: member 'huge.bin' is {2 << 30} bytes, over the limit of "
                                         f"{archive.MAX_MEMBER_BYTES}"):
        read_archive(path)
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 10)
    write_archive(tmp_path / "small.tpc", MEMBERS)
    with pytest.raises(ValueError, match="member 'manifest.json' is 18 bytes, over the limit of 10"):
        read_archive(tmp_path / "small.tpc")


def test_too_many_members_or_bytes_in_all_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "many.tpc"
    write_archive(path, {**MEMBERS, **{f"m{i}": b"" for i in range(10)}})
    assert len(read_archive(path)) == 12
    monkeypatch.setattr(archive, "MAX_MEMBERS", 8)
    with pytest.raises(ValueError, match="many.tpc: more than 8 members"):
        read_archive(path)
    monkeypatch.setattr(archive, "MAX_MEMBERS", 64)
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 20)
    with pytest.raises(ValueError, match="more than 20 bytes"):
        read_archive(path)


def test_compressed_sparse_and_duplicated_archives_are_refused(tmp_path):
    plain = tmp_path / "plain.tpc"
    write_archive(plain, MEMBERS)
    compressed = tmp_path / "compressed.tpc"
    compressed.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(ValueError, match="compressed.tpc: not a readable tpc file"):
        read_archive(compressed)
    sparse = tmp_path / "sparse.tpc"
    with tarfile.open(sparse, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("kernel.so")
        info.type = tarfile.GNUTYPE_SPARSE
        tar.addfile(info)
    with pytest.raises(ValueError, match="sparse"):
        read_archive(sparse)
    twice = tmp_path / "twice.tpc"
    _raw_tar(twice, {MANIFEST: b"{}"})
    with tarfile.open(twice, "a") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    with pytest.raises(ValueError, match="'manifest.json' appears twice"):
        read_archive(twice)


def test_a_deeply_nested_manifest_is_a_clear_error(tmp_path):
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(ValueError, match="deep.tpc: corrupt manifest \\(RecursionError\\)"):
        read_manifest(tmp_path / "deep.tpc", {MANIFEST: deep}, "test")
    with pytest.raises(ValueError, match="corrupt manifest \\(not a JSON object\\)"):
        read_manifest(tmp_path / "list.tpc", {MANIFEST: json.dumps([1]).encode()}, "test")


def test_saving_to_a_directory_is_refused_and_leaves_nothing_behind(tmp_path):
    folder = tmp_path / "kernels"
    folder.mkdir()
    with pytest.raises(ValueError, match="kernels is a directory; give a file name"):
        write_archive(folder, MEMBERS)
    assert sorted(os.listdir(tmp_path)) == ["kernels"] and os.listdir(folder) == []
    with pytest.raises(ValueError, match="cannot write .*missing"):
        write_archive(tmp_path / "missing" / "file.tpc", MEMBERS)
    assert sorted(os.listdir(tmp_path)) == ["kernels"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "file.tpc"
    write_archive(path, MEMBERS)
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", lambda handle: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        write_archive(path, {**MEMBERS, "more": b"x"})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["file.tpc"]


def test_planted_symlinks_are_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    path = tmp_path / "file.tpc"
    (tmp_path / "file.tpc.tmp").symlink_to(victim)
    path.symlink_to(victim)
    write_archive(path, MEMBERS)
    assert victim.read_bytes() == b"precious"
    assert not path.is_symlink() and read_archive(path) == MEMBERS
    assert (tmp_path / "file.tpc.tmp").is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["file.tpc", "file.tpc.tmp", "victim.txt"]


def test_the_file_is_synced_before_and_its_folder_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda handle: events.append(
        ("fsync", os.path.isdir(f"/proc/self/fd/{handle}"))) or real_fsync(handle))
    monkeypatch.setattr(os, "replace", lambda *args: events.append(("replace",)) or real_replace(*args))
    write_archive(tmp_path / "file.tpc", MEMBERS)
    assert events == [("fsync", False), ("replace",), ("fsync", True)]
    assert oct((tmp_path / "file.tpc").stat().st_mode & 0o777) == oct(archive.FILE_MODE)

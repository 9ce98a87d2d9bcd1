"""The files compiled things are saved in: a tar archive of named members, one a JSON manifest.

Written atomically (a temporary file of an unpredictable name in the same folder, synced, then
renamed over the target). A ``digest`` member holds one sha256 over every other member, the
manifest included, and is checked before anything is parsed. Member count and sizes are
checked from the tar headers before any member is read. Every failure is reported as a
ValueError naming the file, and the manifest's format, tpc and TVM versions are checked before
anything in it is used.

Loading a file runs the native code it holds: load only files you trust. The digest catches
corruption and accidental edits, not a deliberate forgery.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence, Union

import tvm

from tpc._version import __version__
from tpc.files import write_atomically

MANIFEST = "manifest.json"
DIGEST = "digest"
MAX_MEMBERS = 1024
"""The most members (of any kind) an archive may hold."""
MAX_MEMBER_BYTES = 1 << 30
"""The largest member, by its tar header, an archive may hold."""
MAX_TOTAL_BYTES = 4 << 30
"""The most bytes, by the tar headers, all members together may hold."""
FILE_MODE = 0o644


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``, as manifests record it."""
    return hashlib.sha256(data).hexdigest()


def digest(members: Mapping[str, bytes]) -> str:
    """The hex sha256 over every member but the digest: names and bytes, by name, each length-prefixed."""
    hasher = hashlib.sha256()
    for name in sorted(members):
        if name == DIGEST:
            continue
        encoded = name.encode()
        hasher.update(len(encoded).to_bytes(8, "little") + encoded)
        hasher.update(len(members[name]).to_bytes(8, "little"))
        hasher.update(members[name])
    return hasher.hexdigest()


def versions() -> dict[str, str]:
    """The tpc and TVM versions a manifest records."""
    return {"tpc_version": __version__, "tvm_version": tvm.__version__}


def write_archive(path: Union[str, os.PathLike], members: Mapping[str, bytes]) -> None:
    """Write ``members`` (name -> bytes) and their digest as one tar file at ``path``, atomically.

    The file is written under an unpredictable name in the same folder, synced to disk, then
    renamed over ``path`` (a symlink there is replaced, never written through).

    Args:
        path: the file to write; an existing file there is replaced only once the new one is complete.
        members: the archive's members in order, e.g. ``{"manifest.json": ..., "kernel.so": ...}``.

    Raises:
        ValueError: ``path`` is a directory or its folder cannot be written.
    """
    path = Path(path)
    if DIGEST in members:
        raise ValueError(f"{DIGEST!r} is reserved for the archive's digest")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: its folder {path.parent} does not exist")

    def write(stream: BinaryIO) -> None:
        with tarfile.open(fileobj=stream, mode="w") as archive:
            for name, data in {**members, DIGEST: digest(members).encode()}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = FILE_MODE
                archive.addfile(info, io.BytesIO(data))

    try:
        write_atomically(path, write, mode=FILE_MODE, create_folder=False)
    except PermissionError as error:
        raise ValueError(f"cannot write {path}: {error.strerror}") from None


def read_archive(path: Union[str, os.PathLike], required: Sequence[str] = (MANIFEST,)) -> dict[str, bytes]:
    """The regular-file members of a tar file written by :func:`write_archive`, digest checked.

    Member count and sizes are checked from the tar headers (see :data:`MAX_MEMBERS`,
    :data:`MAX_MEMBER_BYTES`, :data:`MAX_TOTAL_BYTES`) before any member is read; compressed
    and sparse archives are refused.

    Raises:
        ValueError: the file is missing, unreadable, over a limit, fails its digest, or lacks a
            member of ``required``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    try:
        with tarfile.open(path, "r:") as archive:
            members = _checked_members(path, archive)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{path}: not a readable tpc file ({error})") from None
    if DIGEST not in members:
        raise ValueError(f"{path}: not a tpc file of this kind (no {DIGEST} member)")
    if members[DIGEST].strip() != digest(members).encode():
        raise ValueError(f"{path}: digest does not match the contents; the file is corrupt or was modified")
    del members[DIGEST]
    missing = [name for name in required if name not in members]
    if missing:
        raise ValueError(f"{path}: not a tpc file of this kind (missing {', '.join(missing)})")
    return members


def _checked_members(path: Path, archive: tarfile.TarFile) -> dict[str, bytes]:
    """Read the regular members one header at a time, each checked against the limits first."""
    members: dict[str, bytes] = {}
    total = 0
    for count, member in enumerate(archive, start=1):
        if count > MAX_MEMBERS:
            raise ValueError(f"{path}: more than {MAX_MEMBERS} members; not a tpc file")
        if member.issparse():
            raise ValueError(f"{path}: member {member.name!r} is a sparse file; not a tpc file")
        if not member.isfile():
            continue
        if member.size > MAX_MEMBER_BYTES:
            raise ValueError(f"{path}: member {member.name!r} is {member.size} bytes, over the limit of "
                             f"{MAX_MEMBER_BYTES}")
        total += member.size
        if total > MAX_TOTAL_BYTES:
            raise ValueError(f"{path}: members hold more than {MAX_TOTAL_BYTES} bytes, over the limit")
        if member.name in members:
            raise ValueError(f"{path}: member {member.name!r} appears twice")
        data = archive.extractfile(member).read()
        if len(data) != member.size:
            raise ValueError(f"{path}: member {member.name!r} is truncated")
        members[member.name] = data
    return members


def read_manifest(path: Union[str, os.PathLike], members: Mapping[str, bytes], expected_format: str) -> dict[str, Any]:
    """The archive's manifest, checked for ``expected_format`` and this tpc and TVM version."""
    try:
        manifest = json.loads(members[MANIFEST])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: corrupt manifest ({type(error).__name__})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: corrupt manifest (not a JSON object)")
    if manifest.get("format") != expected_format:
        raise ValueError(f"{path}: not a {expected_format} file (format {manifest.get('format')!r})")
    built_with = (manifest.get("tpc_version"), manifest.get("tvm_version"))
    if built_with != (__version__, tvm.__version__):
        raise ValueError(f"{path}: built with tpc {built_with[0]} / TVM {built_with[1]}, this is tpc {__version__} / "
                         f"TVM {tvm.__version__}; compile it again")
    return manifest


def check_member(path: Union[str, os.PathLike], members: Mapping[str, bytes], name: str, expected_sha256: Any,
                 what: str) -> bytes:
    """Member ``name``, whose sha256 must equal the manifest's ``expected_sha256``."""
    data = members.get(name)
    if data is None:
        raise ValueError(f"{path}: the manifest names {what} {name!r}, which the archive lacks")
    if sha256(data) != expected_sha256:
        raise ValueError(f"{path}: {what} checksum does not match the manifest; the file is corrupt or was modified")
    return data


def load_library(library: bytes) -> Any:
    """Load a shared library given as bytes into a TVM runtime module."""
    with tempfile.TemporaryDirectory() as folder:
        library_path = os.path.join(folder, "kernel.so")
        Path(library_path).write_bytes(library)
        return tvm.runtime.load_module(library_path)

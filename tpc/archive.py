"""The files compiled things are saved in: a tar archive of named members, one a JSON manifest.

Written atomically (a temporary file of an unpredictable name in the same folder, then
renamed over the target); read with every failure reported as a ValueError naming the file,
and the manifest's format, tpc and TVM versions and member checksums checked before anything
in it is used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import tvm

from tpc._version import __version__

MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``, as manifests record it."""
    return hashlib.sha256(data).hexdigest()


def versions() -> dict[str, str]:
    """The tpc and TVM versions a manifest records."""
    return {"tpc_version": __version__, "tvm_version": tvm.__version__}


def write_archive(path: Union[str, os.PathLike], members: Mapping[str, bytes]) -> None:
    """Write ``members`` (name -> bytes) as one tar file at ``path``, atomically.

    Args:
        path: the file to write; an existing file there is replaced only once the new one is complete.
        members: the archive's members in order, e.g. ``{"manifest.json": ..., "kernel.so": ...}``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file name to save to")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream, tarfile.open(fileobj=stream, mode="w") as archive:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_archive(path: Union[str, os.PathLike], required: Sequence[str] = (MANIFEST,)) -> dict[str, bytes]:
    """The regular-file members of a tar file written by :func:`write_archive`.

    Raises:
        ValueError: the file is missing, unreadable, or lacks a member of ``required``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    try:
        with tarfile.open(path, "r") as archive:
            members = {member.name: archive.extractfile(member).read() for member in archive.getmembers()
                       if member.isfile()}
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{path}: not a readable tpc file ({error})") from None
    missing = [name for name in required if name not in members]
    if missing:
        raise ValueError(f"{path}: not a tpc file of this kind (missing {', '.join(missing)})")
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

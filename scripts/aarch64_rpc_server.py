"""TVM's RPC server for aarch64, run under qemu-user on an x86 machine: an ARM device for tuning tests.

Usage: ``python scripts/aarch64_rpc_server.py --tracker HOST:PORT --key KEY [--host 127.0.0.1]``
starts ``python -m tvm.exec.rpc_server`` in an aarch64 Python under ``qemu-aarch64``, registered
at the tracker under the key; ``--setup`` only prepares its root and exits. The root (in
``$TPC_AARCH64_ROOT``, default ``~/.cache/tpc/aarch64-root``) is made once and reused: the
first stage of ``debootstrap`` for Debian bookworm arm64 with Python 3.11 (packages unpacked,
nothing of them run), and the aarch64 wheels of the apache-tvm, apache-tvm-ffi and numpy
releases installed here, so that both ends speak the same RPC protocol. It needs Debian's
debootstrap and qemu-user (``scripts/install-system-deps.sh``) and reaches Debian's mirror and
PyPI once. Timings under emulation mean nothing; the pipeline, the checks and the records are
real. On a real board, ``pip install apache-tvm==<the same release>`` and start the same
server (see the README, "Tuning on other devices").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
DEBIAN_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "zlib1g", "libffi8")
"""Python 3.11 (the wheels' ABI) and the libraries the TVM runtime and numpy link against."""
SERVER_DISTRIBUTIONS = ("apache-tvm", "apache-tvm-ffi", "numpy", "psutil", "cloudpickle", "ml-dtypes",
                        "typing-extensions")
"""What the server imports, each at the version installed here where it is (psutil: the server
kills a timed-out session's processes with it)."""
SITE = "opt/tvm-site"
LAYOUT = 2
"""What this script puts into a root, beside the packages; a root of another layout is made again."""
LAUNCHER = "qemu-python"
"""A host shell script in the root that runs its aarch64 Python under qemu-user: the server's
``sys.executable``, since it starts Python processes of its own and this kernel cannot exec an
aarch64 binary itself."""
SERVE = ("import runpy, sys; sys.executable = sys.argv.pop(1); "
         "runpy.run_module('tvm.exec.rpc_server', run_name='__main__', alter_sys=True)")
"""TVM's server module as ``python -m`` runs it, with the launcher as ``sys.executable``."""


def default_root() -> Path:
    return Path(os.environ.get("TPC_AARCH64_ROOT", Path.home() / ".cache" / "tpc" / "aarch64-root"))


def requirements() -> list[str]:
    """The server's distributions, pinned to this machine's versions where installed."""
    pinned = []
    for name in SERVER_DISTRIBUTIONS:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def setup(root: Path) -> None:
    """Make the root unless it is complete (its ``.complete`` file names what it was made with);
    built beside it and renamed into place, so an interrupted setup leaves no half root."""
    wanted = "\n".join([f"layout {LAYOUT}", SUITE, *DEBIAN_PACKAGES, *requirements()]) + "\n"
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == wanted:
        return
    for tool in ("debootstrap", "dpkg-deb", "qemu-aarch64"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: sh scripts/install-system-deps.sh installs it")
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=root.name + ".partial-", dir=root.parent))
    try:
        subprocess.run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
                        f"--include={','.join(DEBIAN_PACKAGES)}", SUITE, str(partial), MIRROR],
                       check=True, stdout=subprocess.DEVNULL)
        for package in sorted((partial / "var" / "cache" / "apt" / "archives").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(package), str(partial)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux_2_28_aarch64", "--python-version", "3.11", "--implementation",
                        "cp", "--target", str(partial / SITE), *requirements()], check=True)
        check = subprocess.run(command(partial, ["-c", "import tvm.rpc, numpy, platform; print(platform.machine())"]),
                               env=environment(partial), capture_output=True, text=True, timeout=600)
        if check.stdout.strip() != "aarch64":
            raise SystemExit(f"the aarch64 Python in {partial} does not run TVM: {check.stderr[-2000:]}")
        launcher = partial / LAUNCHER
        launcher.write_text(f'#!/bin/sh\nexec qemu-aarch64 -L "{root}" "{root}/usr/bin/python3.11" "$@"\n')
        launcher.chmod(0o755)
        (partial / ".complete").write_text(wanted)
        if root.exists():
            shutil.rmtree(root)
        partial.rename(root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def command(root: Path, arguments: list[str]) -> list[str]:
    """The aarch64 Python of ``root`` under qemu-user, with ``arguments``."""
    return ["qemu-aarch64", "-L", str(root), str(root / "usr" / "bin" / "python3.11"), *arguments]


def environment(root: Path) -> dict[str, str]:
    """This environment with the root's packages as the aarch64 Python's only site."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, "PYTHONPATH": str(root / SITE),
            "PYTHONNOUSERSITE": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracker", help="the tracker, HOST:PORT")
    parser.add_argument("--key", help="the key to register under")
    parser.add_argument("--host", default="127.0.0.1", help="the address the server listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9090, help="the first port to try (default 9090)")
    parser.add_argument("--setup", action="store_true", help="only prepare the root")
    parser.add_argument("--root", type=Path, default=default_root(), help="the aarch64 root (default %(default)s)")
    args = parser.parse_args()
    setup(args.root)
    if args.setup:
        print(args.root)
        return
    if not args.tracker or not args.key:
        parser.error("--tracker and --key are needed to start the server")
    server = ["-c", SERVE, str(args.root / LAUNCHER), "--host", args.host, "--port", str(args.port), "--port-end",
              str(args.port + 100), "--tracker", args.tracker, "--key", args.key]
    os.execvpe("qemu-aarch64", command(args.root, server), environment(args.root))


if __name__ == "__main__":
    main()

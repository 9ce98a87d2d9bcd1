"""onnxruntime custom-op libraries that run a compiled tpc kernel, with no TVM at run time.

:func:`build_ort_library` links a host CPU kernel's object code with ``ort_op.cc`` (the
``ai.tpc::TensorProduct`` operator, written against onnxruntime's C API) into one shared
library. Registered with ``SessionOptions.register_custom_ops_library``, it replaces the
model-local fallback function of exported models. The library serves the one tensor product
and dtype it was built for: a node with another fingerprint or dtype fails session creation
with a message naming both. Constant tables (Gaunt algorithms) are embedded in the library.
Parallel loops run on onnxruntime's intra-op thread pool.

Building needs a C++ compiler and onnxruntime's C API headers. The onnxruntime wheel ships no
headers; :func:`ort_include_dir` fetches them once from Debian's ``libonnxruntime-dev`` package
(a pinned version, from the Debian archive the machine's apt sources name) into the tpc cache,
or takes them from ``$TPC_ORT_INCLUDE``.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Union

import numpy as np
import tvm_ffi.libinfo

from tpc.build import BuildRequest, build
from tpc.cache import cache_root
from tpc.files import write_atomically
from tpc.runtime import Kernel
from tpc.targets import host_triple

ORT_HEADERS_PACKAGE = "libonnxruntime-dev"
ORT_HEADERS_VERSION = "1.21.0+dfsg-1"
ORT_HEADERS_SUITE = "trixie"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
OP_SOURCE = Path(__file__).resolve().parent / "ort_op.cc"
ENTRY_POINT = "__tvm_ffi_main"
# Runtime services the compiled code may call that ort_op.cc supplies; any other TVM symbol
# means the kernel needs the TVM runtime.
SUPPLIED_SYMBOLS = {"TVMFFIErrorSetRaisedFromCStrParts", "__TVMBackendParallelLaunch",
                    "__TVMBackendAllocWorkspace", "__TVMBackendFreeWorkspace"}
ELEMENT_TYPES = {"float32": "ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT", "float64": "ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE"}
COMMAND_TIMEOUT_S = 600


def build_ort_library(kernel: Kernel, path: Union[str, os.PathLike]) -> Path:
    """Write an onnxruntime custom-op library running ``kernel`` to ``path``; return the path.

    ``kernel`` is a product kernel for the host CPU (``target="host"``, or a CPU target of this
    machine's architecture). A kernel that holds only its shared library (loaded from a file,
    or from the kernel cache by ``tpc.compile``) is built again from its op and schedule, for
    its object code. The library implements ``ai.tpc::TensorProduct`` for nodes whose
    ``fingerprint`` and ``dtype`` attributes match the kernel.
    """
    if not isinstance(kernel, Kernel):
        raise TypeError(f"build_ort_library takes a tpc.Kernel, got {type(kernel).__name__}")
    _check_target(kernel)
    if kernel.dtype not in ELEMENT_TYPES:
        raise ValueError(f"onnxruntime libraries support dtypes {tuple(ELEMENT_TYPES)}, the kernel is {kernel.dtype}")
    compiler = _compiler()
    include = ort_include_dir()
    path = Path(path)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        objects = _kernel_objects(kernel, work)
        _check_symbols(objects)
        (work / "kernel_config.h").write_text(_kernel_config(kernel))
        (work / "exports.map").write_text("{ global: RegisterCustomOps; local: *; };\n")
        output = work / "library.so"
        command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden",
                   f"-I{work}", f"-I{include}", f"-I{tvm_ffi.libinfo.find_include_path()}",
                   str(OP_SOURCE), *map(str, objects), "-o", str(output),
                   f"-Wl,--version-script={work / 'exports.map'}", "-Wl,-z,defs", "-lm"]
        _run(command, "compiling the onnxruntime library")
        with open(output, "rb") as built:
            write_atomically(path, lambda stream: shutil.copyfileobj(built, stream))
    return path


def ort_include_dir() -> Path:
    """A folder holding ``onnxruntime_c_api.h``: ``$TPC_ORT_INCLUDE``, else headers fetched
    once into ``<tpc cache>/onnxruntime/<version>/include`` (needs apt and network once)."""
    given = os.environ.get("TPC_ORT_INCLUDE")
    if given:
        folder = Path(given)
        if not (folder / "onnxruntime_c_api.h").is_file():
            raise RuntimeError(f"TPC_ORT_INCLUDE={given} has no onnxruntime_c_api.h")
        return folder
    folder = cache_root() / "onnxruntime" / ORT_HEADERS_VERSION / "include"
    if not (folder / "onnxruntime_c_api.h").is_file():
        _fetch_headers(folder)
    return folder


def _check_target(kernel: Kernel) -> None:
    target = kernel.target
    if target.family != "cpu" or target.triple != host_triple():
        where = f"{target.family}, {target.triple}" if target.family == "cpu" else target.family
        raise ValueError(f"onnxruntime libraries run host CPU kernels ({host_triple()}); this kernel was compiled "
                         f"for target {target.name!r} ({where}); compile it with target='host'")


def _compiler() -> str:
    compiler = os.environ.get("CXX") or "g++"
    found = shutil.which(compiler)
    if found is None:
        raise RuntimeError(f"building an onnxruntime library needs a C++ compiler; {compiler!r} was not found "
                           "(apt-get install g++, or set CXX)")
    return found


def _kernel_objects(kernel: Kernel, folder: Path) -> list[Path]:
    """The kernel's object files, from TVM's tar export of its host module."""
    archive = folder / "kernel.tar"
    if not kernel.library_module().is_compilation_exportable():
        kernel = build(BuildRequest(kernel.op, kernel.target, kernel.dtype, kernel.schedule))
    kernel.library_module().export_library(str(archive))
    objects_folder = folder / "objects"
    with tarfile.open(archive) as tar:
        members = [member for member in tar.getmembers() if member.isfile() and member.name.endswith(".o")]
        tar.extractall(objects_folder, members=members, filter="data")
    objects = sorted(objects_folder.rglob("*.o"))
    if not objects:
        raise ValueError("the kernel's export holds no object file")
    return objects


def _check_symbols(objects: list[Path]) -> None:
    """Refuse kernels that call TVM runtime services the library does not supply."""
    nm = shutil.which("nm")
    if nm is None:
        raise RuntimeError("building an onnxruntime library needs nm (binutils, installed with g++)")
    listing = _run([nm, *map(str, objects)], "listing the kernel's symbols")
    symbols = {fields[-1] for fields in (line.split() for line in listing.splitlines()) if len(fields) >= 2}
    if ENTRY_POINT not in symbols:
        raise ValueError(f"the kernel's object code has no {ENTRY_POINT} entry point")
    unsupported = sorted(name for name in symbols if re.match(r"_*TVM", name) and name not in SUPPLIED_SYMBOLS)
    if unsupported:
        raise ValueError(f"this kernel calls TVM runtime services an onnxruntime library does not provide: "
                         f"{', '.join(unsupported)}")


def _kernel_config(kernel: Kernel) -> str:
    """``kernel_config.h``: what ort_op.cc needs to know about the kernel, tables included."""
    tp = kernel.spec
    lines = [
        f'#define TPC_FINGERPRINT "{tp.fingerprint}"',
        f'#define TPC_DTYPE "{kernel.dtype}"',
        f"#define TPC_DTYPE_BITS {np.dtype(kernel.dtype).itemsize * 8}",
        f"#define TPC_ELEMENT_TYPE {ELEMENT_TYPES[kernel.dtype]}",
        f"#define TPC_DIM1 {tp.irreps_in1.dim}",
        f"#define TPC_DIM2 {tp.irreps_in2.dim}",
        f"#define TPC_DIM_OUT {tp.irreps_out.dim}",
        f"#define TPC_WEIGHT_NUMEL {tp.weight_numel}",
        f"#define TPC_SHARED_WEIGHTS {int(tp.shared_weights)}",
        f"#define TPC_NUM_TABLES {len(kernel.tables)}",
    ]
    if kernel.tables:
        lines += _tables_source(kernel.tables)
    return "\n".join(lines) + "\n"


def _tables_source(tables: tuple[np.ndarray, ...]) -> list[str]:
    """The constant tables as one 64-byte aligned array of words, with offsets and shapes."""
    max_ndim = max(table.ndim for table in tables)
    offsets, words = [], []
    for table in tables:
        data = np.ascontiguousarray(table).tobytes()
        data += b"\0" * (-len(data) % 64)
        offsets.append(sum(len(chunk) for chunk in words))
        words.append(np.frombuffer(data, dtype=np.uint64))
    shapes = [", ".join(str(n) for n in table.shape + (1,) * (max_ndim - table.ndim)) for table in tables]
    flat = np.concatenate(words)
    body = ",\n".join(", ".join(f"0x{word:x}u" for word in flat[i:i + 8]) for i in range(0, len(flat), 8))
    return [
        f"static const int kTableNdim[] = {{{', '.join(str(table.ndim) for table in tables)}}};",
        f"static const int64_t kTableShapes[][{max_ndim}] = {{{', '.join('{' + s + '}' for s in shapes)}}};",
        f"static const size_t kTableOffsets[] = {{{', '.join(map(str, offsets))}}};",
        f"alignas(64) static const uint64_t kTableData[] = {{\n{body}}};",
    ]


def _fetch_headers(folder: Path) -> None:
    """Download Debian's libonnxruntime-dev with apt (private lists, the system untouched)
    and keep its headers in ``folder``."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"fetching onnxruntime's headers needs {tool} (a Debian-based system); otherwise "
                               "set TPC_ORT_INCLUDE to a folder holding onnxruntime_c_api.h (API version >= 17)")
    if not DEBIAN_KEYRING.is_file():
        raise RuntimeError(f"fetching onnxruntime's headers needs Debian's archive keyring {DEBIAN_KEYRING} "
                           "(apt-get install debian-archive-keyring), or set TPC_ORT_INCLUDE")
    mirror = _debian_mirror()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        work = Path(scratch)
        for sub in ("lists/partial", "cache/archives/partial", "preferences.d", "download"):
            (work / sub).mkdir(parents=True)
        (work / "sources.list").write_text(f"deb [signed-by={DEBIAN_KEYRING}] {mirror} {ORT_HEADERS_SUITE} main\n")
        options = [f"-oDir::Etc::SourceList={work / 'sources.list'}", "-oDir::Etc::SourceParts=-",
                   f"-oDir::Etc::PreferencesParts={work / 'preferences.d'}", "-oDir::Etc::Preferences=/dev/null",
                   f"-oDir::State::Lists={work / 'lists'}", f"-oDir::Cache={work / 'cache'}",
                   "-oDir::State::Status=/dev/null", "-oDebug::NoLocking=true",
                   f"-oAPT::Sandbox::User={getpass.getuser()}",
                   # The headers are the same for every architecture.
                   "-oAPT::Architecture=amd64", "-oAPT::Architectures=amd64"]
        what = f"fetching onnxruntime's headers ({ORT_HEADERS_PACKAGE} {ORT_HEADERS_VERSION} from Debian {mirror})"
        _run(["apt-get", *options, "-qq", "update"], what)
        _run(["apt-get", *options, "-qq", "download", f"{ORT_HEADERS_PACKAGE}={ORT_HEADERS_VERSION}"],
             f"{what}; if the archive no longer has this version, update ORT_HEADERS_VERSION in {__name__}",
             cwd=work / "download")
        packages = list((work / "download").glob("*.deb"))
        if len(packages) != 1:
            raise RuntimeError(f"{what}: apt-get download left {len(packages)} packages")
        _run(["dpkg-deb", "-x", str(packages[0]), str(work / "root")], what)
        headers = work / "root" / "usr" / "include" / "onnxruntime"
        if not (headers / "onnxruntime_c_api.h").is_file():
            raise RuntimeError(f"{what}: the package has no onnxruntime_c_api.h")
        shutil.copytree(headers, work / "include")
        try:
            os.replace(work / "include", folder)
        except OSError:
            if not (folder / "onnxruntime_c_api.h").is_file():
                raise


def _debian_mirror() -> str:
    """The Debian archive of this machine's apt sources: the one labelled "Debian" (read from
    its release file), else, before any apt-get update, the first serving a plain release."""
    listing = _run(["apt-get", "indextargets", "--format", "$(TARGET_OF) $(REPO_URI) $(RELEASE) $(LABEL)"],
                   "reading the apt sources")
    entries = [line.split() for line in listing.splitlines() if line.startswith("deb ")]
    for preferred in ([e[1] for e in entries if e[3:] == ["Debian"]],
                      [e[1] for e in entries if len(e) >= 3 and "-" not in e[2]]):
        if preferred:
            return preferred[0]
    raise RuntimeError("fetching onnxruntime's headers needs a Debian archive in the apt sources; none found "
                       "(set TPC_ORT_INCLUDE to a folder holding onnxruntime_c_api.h instead)")


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a command, returning its output; failures raise RuntimeError with its stderr."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: {command[0]} did not finish in {COMMAND_TIMEOUT_S} s") from None
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({command[0]} exited with {result.returncode}):\n"
                           f"{(result.stderr or result.stdout).strip()}")
    return result.stdout

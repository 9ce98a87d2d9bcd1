"""The ``tpc`` command.

Every error is one line on stderr, ``tpc: error: ...``, with the exit codes of :data:`EXIT_CODES`;
``TPC_DEBUG=1`` in the environment shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from tpc import presets, report
from tpc.build import compile as compile_kernel
from tpc.cache import CachedRecord, cached_entries, warn_skipped
from tpc.dtypes import DTYPES
from tpc.ops import (
    ALGORITHMS,
    CONTRACTION_KEYS,
    FUSIONS,
    JOINT_GRADIENTS,
    WRT,
    Contraction,
    Fused,
    Gradient,
    Product,
    TensorProduct,
)
from tpc.targets import (
    EXACT,
    SAME_ARCH,
    SAME_CPU,
    SAME_ISA,
    TARGET_NAMES,
    TargetSpec,
    kinship,
    resolve_target,
    target_label,
    vector_isa,
)

if TYPE_CHECKING:
    from tpc.graph import Graph

EXIT_CODES = """exit status: 0 done; 1 failed while running (a file that cannot be read or written, an
unexpected error); 2 bad arguments or input (an unknown option value, a malformed spec or graph
file, an unknown preset, a missing optional dependency); 130 tuning interrupted (1 where it
stopped on a failed write, what was measured kept). Errors are one line on stderr; set
TPC_DEBUG=1 for the traceback."""

# Errors tpc raises about what it was asked to do: exit status 2 (OS errors and anything else: 1).
_BAD_INPUT = (ValueError, TypeError, LookupError, RuntimeError)


def _positive_int(text: str) -> int:
    """An argparse type: a positive integer, else a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _read_json_file(kind: str, path: Path, parse: Callable[[str], Any]) -> Any:
    """``parse`` of the text of a spec or graph file; a malformed file is a ValueError naming it."""
    text = path.read_text()
    try:
        return parse(text)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{kind} file {str(path)!r}: {_one_line(error)}") from None


def _load_spec(args: argparse.Namespace) -> tuple[str, TensorProduct, int]:
    if (args.spec is None) == (args.preset is None):
        raise ValueError("give either a SPEC file or --preset NAME")
    if args.preset is not None:
        preset = presets.get(args.preset)
        return f"{preset.name}: {preset.description}", preset.tp, args.batch or preset.batch
    path = Path(args.spec)
    if not path.is_file():
        raise ValueError(f"spec file {args.spec!r} does not exist")
    return str(path), _read_json_file("spec", path, TensorProduct.from_json), args.batch or 1


def describe(title: str, tp: TensorProduct, batch: int) -> str:
    """Human-readable summary of a spec: irreps, paths, weights, coefficients and FLOPs."""
    lines = [
        title,
        f"  irreps_in1  {tp.irreps_in1}  (dim {tp.irreps_in1.dim})",
        f"  irreps_in2  {tp.irreps_in2}  (dim {tp.irreps_in2.dim})",
        f"  irreps_out  {tp.irreps_out}  (dim {tp.irreps_out.dim})",
        f"  normalization  irrep={tp.irrep_normalization} path={tp.path_normalization}  "
        f"weights={'shared' if tp.shared_weights else 'per-sample'}",
        "",
        f"  {'#':>3}  {'path':<26} {'mode':<5} {'weights':>8} {'coeff':>10} {'nnz':>6} {'FLOPs':>10}",
    ]
    for number, ins in enumerate(tp.instructions):
        (m1, ir1), (m2, ir2), (mo, iro) = (tp.irreps_in1[ins.i_in1], tp.irreps_in2[ins.i_in2],
                                           tp.irreps_out[ins.i_out])
        path = f"{m1}x{ir1} x {m2}x{ir2} -> {mo}x{iro}"
        lines.append(f"  {number:>3}  {path:<26} {ins.connection_mode:<5} {ins.weight_numel:>8} "
                     f"{ins.coefficient:>10.4g} {tp.path_nnz(ins):>6} {tp.path_flops(ins):>10}")
    lines += [
        "",
        f"  paths {len(tp.instructions)}   weight_numel {tp.weight_numel}   nonzero coefficients {tp.nnz}",
        f"  FLOPs per sample {tp.flops():,}   at batch {batch}: {tp.flops(batch) / 1e9:.4g} GFLOP",
        f"  fingerprint {tp.fingerprint}",
    ]
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    title, tp, batch = _load_spec(args)
    print(tp.to_json() if args.json else describe(title, tp, batch))
    return 0


def _compile(args: argparse.Namespace) -> int:
    title, tp, batch = _load_spec(args)
    kernel = compile_kernel(tp, batch=batch, target=args.target, dtype=args.dtype, algorithm=args.algorithm)
    kernel.save(args.output)
    print(f"{title}\n  compiled for {kernel.target.name} ({kernel.target.tvm_dict}), {kernel.dtype}, "
          f"algorithm {kernel.schedule.algorithm}, schedule from {kernel.schedule.source}: {kernel.schedule.config}"
          f"\n  wrote {args.output} "
          f"({Path(args.output).stat().st_size:,} bytes)")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from tpc.export import build_ort_library, export_onnx

    if args.ort_library is None:
        for option in ("target", "batch"):
            if getattr(args, option) is not None:
                raise ValueError(f"--{option} selects the kernel of --ort-library; give --ort-library FILE.so too")
    _, tp, batch = _load_spec(args)
    op = args.preset or Path(args.spec).name
    algorithm = "cg"
    if args.ort_library is not None:
        kernel = compile_kernel(tp, batch=batch, target=args.target or "host", dtype=args.dtype)
        algorithm = kernel.schedule.algorithm
        build_ort_library(kernel, args.ort_library)
        print(f"wrote {args.ort_library}: onnxruntime library of {op} ({kernel.target.name}, {kernel.dtype}, "
              f"algorithm {algorithm}, schedule from {kernel.schedule.source}, "
              f"{Path(args.ort_library).stat().st_size:,} bytes)")
    export_onnx(tp, args.output, dtype=args.dtype, algorithm=algorithm)
    print(f"wrote {args.output}: ONNX model of {op} ({len(tp.instructions)} paths, {args.dtype}, "
          f"algorithm {algorithm}, {Path(args.output).stat().st_size:,} bytes)")
    return 0


def _load_graph(args: argparse.Namespace) -> tuple[str, "Graph", dict[str, int]]:
    """The graph of ``--graph FILE`` or ``--graph-preset NAME`` and its dim sizes (the preset's,
    overridden by ``--size dim=N``)."""
    from tpc.graph import Graph

    if (args.graph is None) == (args.graph_preset is None):
        raise ValueError("give either --graph FILE or --graph-preset NAME")
    sizes: dict[str, int] = {}
    if args.graph_preset is not None:
        preset = presets.get_graph(args.graph_preset)
        title, graph, sizes = f"{preset.name}: {preset.description}", preset.graph, dict(preset.sizes)
    else:
        path = Path(args.graph)
        if not path.is_file():
            raise ValueError(f"graph file {args.graph!r} does not exist")
        title, graph = str(path), _read_json_file("graph", path, Graph.from_json)
    for item in args.size or []:
        dim, _, value = item.partition("=")
        if not dim or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--size takes DIM=N with N a positive integer, got {item!r}")
        sizes[dim] = int(value)
    return title, graph, sizes


def _tune_graph(args: argparse.Namespace) -> int:
    import tpc.tune

    for option in ("spec", "preset", "batch", "gradient", "log"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')} tunes one product; a graph takes --size DIM=N instead")
    title, graph, sizes = _load_graph(args)
    print(title, file=sys.stderr)
    result = tpc.tune.tune_graph(graph, sizes, target=args.target, dtype=args.dtype, trials=args.trials,
                                 fusion=args.fusion, strategy=args.strategy, seed=args.seed, runner=_runner(args))
    print(tpc.tune.graph_summary(result))
    return _tune_status(result)


def _tune_model(args: argparse.Namespace) -> int:
    """``tpc tune --model FILE``: the kernels one run of a saved model calls, tuned with one budget."""
    for option in ("spec", "preset", "batch", "gradient", "log", "graph", "graph_preset", "size"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')} does not go with --model: the model's run gives the "
                             "products, their sizes and dtype")
    try:
        from tpc.torch import tuning
        from tpc.tune import graph_summary
    except ImportError as error:
        raise ValueError(f"tpc tune --model needs PyTorch ({error}); pip install -e '.[torch]'") from None
    model = tuning.load_model(args.model)
    title, run = tuning.model_runner(model, inputs=args.inputs, structure=args.structure)
    print(f"{args.model}: {title}", file=sys.stderr)
    result = tuning.tune_model(model, run, target=args.target, trials=args.trials, strategy=args.strategy,
                               seed=args.seed, runner=_runner(args))
    print(graph_summary(result))
    return _tune_status(result)


def _tune(args: argparse.Namespace) -> int:
    import tpc.tune

    if args.model is not None:
        return _tune_model(args)
    for option in ("inputs", "structure"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option} gives the inputs of --model FILE; give --model too")
    if args.graph is not None or args.graph_preset is not None:
        return _tune_graph(args)
    if args.preset in presets.contraction_names():
        preset = presets.get_contraction(args.preset)
        if args.gradient not in (None, "x", "weight"):
            raise ValueError(f"{preset.name} is a product basis: its gradients are x and weight, not {args.gradient}")
        title, batch, wrt = f"{preset.name}: {preset.description}", args.batch or preset.nodes, None
        problem = Contraction(preset.spec, args.gradient or "")
    else:
        if args.gradient == "x":
            raise ValueError("--gradient x is a product basis's; a product's gradients are x1, x2 and weight")
        (title, problem, batch), wrt = _load_spec(args), args.gradient
    print(title, file=sys.stderr)
    result = tpc.tune.tune(problem, batch=batch, target=args.target, dtype=args.dtype, trials=args.trials,
                           strategy=args.strategy, log=args.log, resume=args.resume, seed=args.seed, wrt=wrt,
                           runner=_runner(args))
    print(tpc.tune.summary(result, problem.flops(batch)))
    return _tune_status(result)


def _runner(args: argparse.Namespace) -> Any:
    """The RPC runner ``--rpc`` and ``--rpc-key`` ask for, its devices found; None: measure here."""
    from tpc.tune.rpc import as_runner

    return as_runner(args.rpc, args.rpc_key, args.rpc_wait)


def _tune_status(result: Any) -> int:
    """0 for a finished run, 1 for one stopped by a failed write, 130 for one interrupted."""
    if result.error is not None:
        return 1
    return 130 if result.interrupted else 0


def _list(args: argparse.Namespace) -> int:
    from tpc.tune.graph import UNFUSED_AND_FUSED, graph_tasks

    names, keys = {}, {}
    for name in presets.names():
        tp = presets.get(name).tp
        ops = {Product(tp): name,
               **{Gradient(tp, wrt): f"{name} d/d{wrt}" for wrt in WRT if wrt != "weight" or tp.weight_numel},
               **{Fused(tp, fusion): f"{name} fused {fusion}" for fusion in FUSIONS}}
        names.update({op.fingerprint: label for op, label in ops.items()})
        keys.update({op.fingerprint: op.schedule_key for op in ops})
    for name in presets.contraction_names():
        spec = presets.get_contraction(name).spec
        ops = {Contraction.from_schedule_key(spec, key): f"{name} {key.partition(':')[2] or 'forward'}"
               for key in CONTRACTION_KEYS}
        names.update({op.fingerprint: label for op, label in ops.items()})
        keys.update({op.fingerprint: op.schedule_key for op in ops})
    for name in presets.graph_names():
        graph = presets.get_graph(name)
        for cut in UNFUSED_AND_FUSED:
            for task in graph_tasks(graph.graph, graph.sizes, cut):
                names[task.op.fingerprint] = f"{name} {task.fusion or 'product'}"
                keys[task.op.fingerprint] = task.op.schedule_key
    rows = {}
    for entry in cached_entries():
        record = entry.record
        problem = _knob_problem(entry, keys)
        if problem is not None:
            warn_skipped(entry.path, entry.line, problem)
            continue
        key = (record.op, record.batch, record.dtype, record.target_fingerprint)
        if key not in rows or record.seconds < rows[key][1].seconds:
            rows[key] = (entry.source, record)
    wanted = resolve_target(args.target)
    width = max([24] + [len(names.get(op, op[:12])) for op, *_ in rows])
    serves = f"for {args.target}"
    print(f"{'op':<{width}} {'batch':>6} {'dtype':<8} {'target':<34} {'best ms':>9} {'source':<11} "
          f"{serves:<15} algorithm, knobs")
    for (op, batch, dtype, _), (source, record) in sorted(rows.items(), key=lambda item: item[0]):
        target = f"{record.target.get('kind')}/{record.target.get('mtriple', record.target.get('arch', ''))}" \
                 f"/{record.target.get('mcpu', '')}"
        print(f"{names.get(op, op[:12]):<{width}} {batch:>6} {dtype:<8} {target:<34} {record.seconds * 1e3:>9.3f} "
              f"{source:<11} {_kinship_label(wanted, record.target):<15} {record.algorithm} {record.config}")
    if not rows:
        print("(no cached schedules)")
    else:
        isa = vector_isa(wanted.tvm_dict)
        print(f"\n{serves} ({target_label(wanted.tvm_dict)}, {isa.isa} {isa.arch}): an op without records of "
              "this target takes the nearest kin's (same cpu, then same vector ISA, then same architecture); "
              "its kernel's schedule source names the target it was tuned on")
    return 0


def _kinship_label(wanted: TargetSpec, tuned: dict) -> str:
    """How a record's target serves ``wanted``, for ``tpc list``: "exact", "same cpu", "same avx2", ..."""
    kin = kinship(wanted, tuned)
    if kin is None:
        return "-"
    isa = vector_isa(tuned)
    return {EXACT: "exact", SAME_CPU: "same cpu", SAME_ISA: f"same {isa.isa}", SAME_ARCH: f"same {isa.arch}"}[kin]


def _cache_prune(args: argparse.Namespace) -> int:
    from tpc.cache import prune

    report = prune(args.file, keep=args.keep, dry_run=args.dry_run)
    print(report.summary(args.dry_run))
    return 0


def _knob_problem(entry: CachedRecord, keys: dict[str, str | None]) -> str | None:
    """Why a cached record's knobs do not fit the current knob space of its op, or None.

    The op's schedule key comes from ``keys`` (fingerprint -> key) when the op is a preset's,
    else any key whose space has the record's algorithm and version may accept the knobs; a
    record of another space version or of an unknown target kind is not checked, as the
    compiler never takes it.
    """
    from tpc.schedule import scheduled_algorithms, search_space

    record = entry.record
    family = {"llvm": "cpu", "cuda": "cuda"}.get(record.target.get("kind"))
    if family is None:
        return None
    candidates = [keys[record.op]] if record.op in keys else [None, *WRT, *FUSIONS, *CONTRACTION_KEYS]
    problems = []
    for key in candidates:
        if record.algorithm not in scheduled_algorithms(family, key):
            continue
        space = search_space(family, record.algorithm, key)
        if space.version != record.space_version:
            return None
        try:
            space.validate(record.config)
        except (ValueError, TypeError) as error:
            problems.append(str(error))
        else:
            return None
    return problems[0] if problems else None


def _report(args: argparse.Namespace) -> int:
    curves = report.tuning_curves(report.read_logs(args.logs))
    print(report.summary(curves))
    report.plot_curves(curves, args.output)
    print(f"wrote {args.output}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    for name in presets.names():
        preset = presets.get(name)
        print(f"{name:<14} batch {preset.batch:>6}  {preset.description}")
    for name in presets.contraction_names():
        contraction = presets.get_contraction(name)
        print(f"{name:<14} nodes {contraction.nodes:>6}  {contraction.description}")
    return 0


def _add_op_arguments(command: argparse.ArgumentParser, batch_help: str) -> None:
    """The op (spec file or preset), target, dtype and batch of compile and tune."""
    command.add_argument("spec", nargs="?", help="a spec JSON file (as written by tpc info --json)")
    command.add_argument("--preset", help="a named problem")
    command.add_argument("--target", default="host", help=f"one of {', '.join(TARGET_NAMES)} (cuda:sm_XX for an arch)")
    command.add_argument("--dtype", default="float32", choices=DTYPES)
    command.add_argument("--batch", type=_positive_int, help=batch_help)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tpc", description="Tensor-product compiler for equivariant networks.", epilog=EXIT_CODES)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="show a tensor product: paths, weights, FLOPs")
    info.add_argument("spec", nargs="?", help="a spec JSON file (as written by --json)")
    info.add_argument("--preset", help=f"a named problem: {', '.join(presets.names())}")
    info.add_argument("--batch", type=_positive_int, help="batch size for the FLOP total (default: the preset's)")
    info.add_argument("--json", action="store_true", help="print the canonical spec JSON instead")
    info.set_defaults(run=_info)
    build = commands.add_parser("compile", help="compile a product for a target and save the kernel file")
    _add_op_arguments(build, "the batch size the kernel will mostly run at")
    build.add_argument("-o", "--output", required=True, help="kernel file to write (load with tpc.load)")
    build.add_argument("--algorithm", choices=ALGORITHMS,
                       help="force an algorithm (fourier and grid: Gaunt products only); default: the cached winner")
    build.set_defaults(run=_compile)
    export = commands.add_parser("export-onnx", help="write an ONNX model of a product that runs in onnxruntime")
    export.add_argument("spec", nargs="?", help="a spec JSON file (as written by tpc info --json)")
    export.add_argument("--preset", help="a named problem")
    export.add_argument("-o", "--output", required=True, help="ONNX file to write")
    export.add_argument("--dtype", default="float32", choices=DTYPES)
    export.add_argument("--ort-library", metavar="FILE.so",
                        help="also compile the product and write an onnxruntime custom-op library running it "
                             "(register it with SessionOptions.register_custom_ops_library)")
    export.add_argument("--target", help=f"target of the library's kernel, one of {', '.join(TARGET_NAMES)}; "
                                         "default host (libraries run host CPU kernels only)")
    export.add_argument("--batch", type=_positive_int, help="batch size the library will mostly run at, which "
                                                             "selects the cached schedule (default: the preset's)")
    export.set_defaults(run=_export_onnx)
    tune = commands.add_parser("tune", help="search schedules by measurement and cache the best")
    _add_op_arguments(tune, "batch size to tune for (default: the preset's)")
    tune.add_argument("--trials", type=_positive_int, default=64, help="measurements in total (default 64)")
    tune.add_argument("--strategy", default="xgb", choices=("xgb", "random"))
    tune.add_argument("--log", help="tuning log (JSON lines); default tuning_logs/<op>-<target>-<dtype>-b<batch>.jsonl")
    tune.add_argument("--resume", action="store_true", help="continue from the log without re-measuring")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--gradient", choices=WRT + JOINT_GRADIENTS + ("x",),
                      help="tune the gradient with respect to this argument (or these, computed in one pass) instead "
                           "of the product (CPU targets; tpc.compile_gradient uses the result); x or weight for a "
                           "product-basis preset")
    tune.add_argument("--graph", metavar="FILE", help="tune the kernels of a graph (JSON, as Graph.to_json writes) "
                                                      "instead of one product; they share --trials")
    tune.add_argument("--graph-preset", metavar="NAME", help=f"a named graph: {', '.join(presets.graph_names())}")
    tune.add_argument("--size", action="append", metavar="DIM=N",
                      help="size of a symbolic dim of the graph, e.g. edges=60000 (repeatable; default: the preset's)")
    tune.add_argument("--fusion", default="gather+scatter", choices=("none", "gather", "scatter", "gather+scatter"),
                      help="what may be fused into the graph's products (default gather+scatter, as tpc.compile_graph)")
    tune.add_argument("--model", metavar="FILE",
                      help="tune the kernels a model runs: a torch.save'd model or a mace .model file, converted "
                           "with tpc.torch.convert and run once (mace: energy and forces); its products and "
                           "gradients at their row counts and in its dtype share --trials")
    tune.add_argument("--inputs", metavar="BATCH.pt",
                      help="the model's inputs, written by torch.save: a mace batch dict, or a tuple of a model's "
                           "positional arguments (tensors saved requiring grad get gradients, as forces)")
    tune.add_argument("--structure", metavar="FILE",
                      help="for a mace model: a structure file ase reads (default: a built-in acetamide box)")
    tune.add_argument("--rpc", metavar="HOST:PORT",
                      help="measure on the devices behind this TVM RPC tracker (python -m tvm.exec.rpc_tracker) "
                           "instead of here; kernels are built here for --target. A TVM RPC server runs the code "
                           "it is sent: keep trackers and servers on a trusted network")
    tune.add_argument("--rpc-key", metavar="KEY", help="the key the devices registered under (rpc_server --key)")
    tune.add_argument("--rpc-wait", type=float, default=60.0, metavar="SECONDS",
                      help="how long to wait for a device under the key before failing (default 60)")
    tune.set_defaults(run=_tune)
    listing_cache = commands.add_parser("list", help="show the cached schedules")
    listing_cache.add_argument("--target", default="host",
                               help="say how each record's target serves this one (default host)")
    listing_cache.set_defaults(run=_list)
    cache = commands.add_parser("cache", help="maintain the schedule cache")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    pruning = cache_commands.add_parser(
        "prune", help="keep the fastest configurations per (op, batch bucket, dtype, target, algorithm); drop "
                      "failed, stale and unreadable lines (the file is replaced atomically, under the tuners' lock)")
    pruning.add_argument("--keep", type=_positive_int, default=3,
                         help="configurations kept per key (default 3: the tuner learns from near pairs)")
    pruning.add_argument("--file", type=Path, help="the schedule file (default: the user cache, "
                                                   "$TPC_CACHE/schedules.jsonl)")
    pruning.add_argument("--dry-run", action="store_true", help="count only; leave the file as it is")
    pruning.set_defaults(run=_cache_prune)
    reporting = commands.add_parser("report", help="draw best latency against trial from tuning logs")
    reporting.add_argument("logs", nargs="+", metavar="LOG", help="tuning logs (JSON lines, as written by tpc tune)")
    reporting.add_argument("-o", "--output", required=True, help="image to write (PNG, or SVG/PDF by suffix)")
    reporting.set_defaults(run=_report)
    listing = commands.add_parser("presets", help="list the named problems")
    listing.set_defaults(run=_presets)
    return parser


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (a KeyError's key unquoted, the type when empty)."""
    message = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error
    return " ".join(str(message).split()) or type(error).__name__


def _format_warning(message: Any, category: type, filename: str, lineno: int, line: str | None = None) -> str:
    """A warning as one line: ``tpc: warning: ...`` (no source location or line of code)."""
    return f"tpc: warning: {_one_line(Warning(str(message)))}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tpc`` console script.

    Args:
        argv: the arguments after ``tpc``; None takes ``sys.argv``.

    Returns:
        The exit status (see :data:`EXIT_CODES`); bad arguments exit with 2 from argparse.
    """
    args = _parser().parse_args(argv)
    debug = os.environ.get("TPC_DEBUG", "") not in ("", "0")
    formatwarning = warnings.formatwarning
    if not debug:
        warnings.formatwarning = _format_warning
    try:
        return args.run(args)
    except Exception as error:
        if debug:
            raise
        if isinstance(error, _BAD_INPUT):
            print(f"tpc: error: {_one_line(error)}", file=sys.stderr)
            return 2
        if isinstance(error, OSError):
            print(f"tpc: error: {_one_line(error)}", file=sys.stderr)
            return 1
        print(f"tpc: error: {type(error).__name__}: {_one_line(error)} (TPC_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())

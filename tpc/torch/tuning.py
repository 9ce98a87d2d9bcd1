"""Tuning a whole PyTorch model: the tensor-product kernels it runs, at the sizes it runs them.

Which products and gradients a model computes, at how many rows (edges, nodes) and in which
dtype, shows only when it runs: :func:`model_tasks` converts the model
(:func:`tpc.torch.convert`), runs it once under :func:`tpc.torch.ops.record_calls` and makes one
:class:`tpc.tune.graph.Task` per kernel (a ``Product`` or ``Gradient`` op at a row count and
dtype, counted as often as one run calls it). :func:`tune_model` tunes them with one shared
trial budget through :func:`tpc.tune.graph.tune_tasks`; the records go to the schedule cache,
so a later conversion of the model compiles its kernels with them. :func:`model_runner` says
how to run a model once: a mace-torch model for energy and forces (on a batch, a structure
file or the built-in acetamide box), any other model on saved positional arguments. This is
``tpc tune --model``.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch

from tpc.ops import Contraction
from tpc.ops import SymmetricContraction as SymmetricContractionSpec
from tpc.targets import TargetSpec, resolve_target
from tpc.torch.contraction import SymmetricContraction, contraction_op, forget_contraction_kernels
from tpc.torch.convert import convert
from tpc.torch.convolution import Convolution
from tpc.torch.mace import read_module
from tpc.torch.modules import TensorProduct
from tpc.torch.ops import KernelCall, compiled_op, forget_kernels, op_of, record_calls
from tpc.tune.graph import GraphTuneResult, Task, tune_tasks

EXAMPLE_COPIES = 3
"""A mace model without inputs runs on :func:`tpc.torch.mace.example_atoms` of this many copies
per side (243 atoms, about 7500 edges at a 5 Angstrom cutoff)."""

Run = Callable[[torch.nn.Module], Any]
"""Runs a (converted) model once, as it is used: e.g. forward and forces."""


def load_model(path: Union[str, Path]) -> torch.nn.Module:
    """A model saved whole with ``torch.save`` (a mace ``.model`` file or any module), on the CPU, in eval mode.

    Loading unpickles Python objects (``weights_only=False``): load only files you trust.

    Args:
        path: the file.

    Returns:
        The module.

    Raises:
        ValueError: no such file, a file torch.load cannot read, or one that holds no module.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    return read_module(path).eval()


def is_mace(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a mace-torch model (run for energy and forces on a batch dict)."""
    return type(model).__module__.partition(".")[0] == "mace" and hasattr(model, "atomic_numbers")


def model_runner(model: torch.nn.Module, *, inputs: Union[None, str, Path] = None,
                 structure: Union[None, str, Path] = None) -> tuple[str, Run]:
    """How to run ``model`` once as it is used, and a line saying on what.

    A mace model computes energy and forces (:func:`tpc.torch.mace.evaluate` without stress)
    on the batch dict saved in ``inputs`` (floating tensors cast to the model's dtype), else on
    the structure file ``structure`` (read with ``ase.io.read``), else on the built-in periodic
    acetamide box (:func:`tpc.torch.mace.example_atoms`). Any other model is called on the
    arguments saved in ``inputs`` with ``torch.save``: a tuple or list (positional), a dict
    (keywords) or one tensor; where saved tensors require gradients, the gradient of the sum of
    the outputs with respect to them is taken too, as forces are.

    Args:
        model: the model (converted or not).
        inputs: a file written by ``torch.save``.
        structure: a structure file ase reads (mace models only).

    Returns:
        A description of the run and the function that runs a model once.

    Raises:
        ValueError: a missing or unreadable file, inputs of the wrong kind, a structure for a
            model that is not mace's, or no inputs for such a model.
    """
    if inputs is not None and structure is not None:
        raise ValueError("give either --inputs or --structure, not both")
    if not is_mace(model):
        if structure is not None:
            raise ValueError("a structure builds a mace batch; give the inputs of a model that is not mace's "
                             "with --inputs (a torch.save'd tuple of its arguments)")
        if inputs is None:
            raise ValueError(f"{type(model).__name__} is not a mace model: give its inputs with --inputs "
                             "(a torch.save'd tuple of its positional arguments)")
        arguments = _read_inputs(inputs)
        return f"{type(model).__name__} called on the arguments in {inputs}", lambda module: _call(module, arguments)
    from tpc.torch import mace

    if inputs is not None:
        batch = _read_inputs(inputs)
        if not isinstance(batch, dict) or not all(isinstance(value, torch.Tensor) for value in batch.values()):
            raise ValueError(f"inputs file {str(inputs)!r} holds a {type(batch).__name__}; a mace model takes a dict "
                             "of tensors (as tpc.torch.mace.batch_for builds)")
        dtype = mace.model_dtype(model)
        batch = {key: value.to(dtype) if value.is_floating_point() else value for key, value in batch.items()}
        where = f"the batch in {inputs}"
    else:
        atoms = _read_structure(structure) if structure is not None else mace.example_atoms(EXAMPLE_COPIES)
        known = sorted(int(z) for z in model.atomic_numbers)
        unknown = sorted({int(z) for z in atoms.numbers} - set(known))
        if unknown:
            raise ValueError(f"the structure does not fit the model: it has atomic numbers {unknown}, the model knows "
                             f"{known}")
        try:
            batch = mace.batch_for(model, atoms)
        except (KeyError, ValueError, IndexError, TypeError) as error:
            raise ValueError(f"the structure does not fit the model: {_message(error)}") from None
        where = str(structure) if structure is not None else \
            f"the built-in acetamide box of {EXAMPLE_COPIES ** 3} molecules"
        where += f" ({len(atoms)} atoms, {batch['edge_index'].shape[1]} edges)"
    return f"{type(model).__name__}: energy and forces on {where}", \
        lambda module: mace.evaluate(module, batch, stress=False)


def _read_inputs(path: Union[str, Path]) -> Any:
    """What ``torch.save`` wrote to ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"inputs file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"inputs file {str(path)!r} is not something torch.save wrote: "
                         f"{type(error).__name__}: {error}") from None


def _read_structure(path: Union[str, Path]) -> Any:
    """The (last) structure of a file ase reads."""
    import ase.io

    if not Path(path).is_file():
        raise ValueError(f"structure file {str(path)!r} does not exist")
    try:
        return ase.io.read(path)
    except Exception as error:  # ase raises many kinds (UnknownFileTypeError, StopIteration, ValueError...)
        raise ValueError(f"structure file {str(path)!r}: ase cannot read it: {type(error).__name__}: "
                         f"{_message(error)}") from None


def _call(model: torch.nn.Module, arguments: Any) -> Any:
    """``model`` on saved arguments; then the gradient of its outputs' sum with respect to the
    saved tensors that require one."""
    if isinstance(arguments, dict):
        args, kwargs = (), dict(arguments)
    else:
        args, kwargs = (tuple(arguments) if isinstance(arguments, (tuple, list)) else (arguments,)), {}
    leaves = [value.detach().requires_grad_() if isinstance(value, torch.Tensor) and value.requires_grad else value
              for value in (*args, *kwargs.values())]
    args, kwargs = tuple(leaves[:len(args)]), dict(zip(kwargs, leaves[len(args):]))
    out = model(*args, **kwargs)
    wanted = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor) and leaf.requires_grad]
    outputs = [value for value in _tensors(out) if value.requires_grad]
    if wanted and outputs:
        torch.autograd.grad(sum(value.sum() for value in outputs), wanted, allow_unused=True)
    return out


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a model's output: a tensor, or tuples, lists and dicts of them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _tensors(item)]
    return []


def model_tasks(model: torch.nn.Module, run: Run, *, target: Union[str, dict, TargetSpec] = "host") -> list[Task]:
    """The kernels ``run`` calls in the conversion of ``model`` to ``target``, as tuning tasks.

    One task per (op, rows, dtype): the product (``Product``) or a gradient (``Gradient(tp,
    wrt)``) at the batch rows of its calls, ``count`` the calls of one run, ``nodes`` the
    model's modules of that product, ``dtype`` the dtype it ran in; in the order first called.
    ``model`` itself is left as it was (a copy is converted).

    Args:
        model: any module with e3nn tensor products (or already converted ones).
        run: runs a model once (see :func:`model_runner`).
        target: the CPU target the kernels are compiled and tuned for.

    Returns:
        The tasks.

    Raises:
        ValueError: the conversion has no tpc tensor product, the run fails (inputs that do not
            fit the model) or calls no tpc kernel.
    """
    spec = resolve_target(target)
    converted = convert(model, target=spec)
    modules: dict[str, list[str]] = {}
    for path, module in converted.named_modules():
        if isinstance(module, (TensorProduct, Convolution, SymmetricContraction)):
            modules.setdefault(module.key, []).append(path or "(model)")
    if not modules:
        left = converted.tpc_conversion.left
        why = f"left: {'; '.join(f'{entry.path}: {entry.reason}' for entry in left)}" if left else \
            "it has no e3nn tensor product"
        raise ValueError(f"{type(model).__name__} has no tensor product tpc computes after conversion ({why})")
    try:
        with record_calls() as calls:
            run(converted)
    except OSError:
        raise
    except Exception as error:
        raise ValueError(f"the inputs do not fit the model: running it failed with {type(error).__name__}: "
                         f"{_message(error)}") from None
    if not calls:
        raise ValueError(f"{type(model).__name__} ran none of its {sum(map(len, modules.values()))} tpc tensor "
                         "products on these inputs")
    return tasks_from_calls(calls, modules, spec)


def tasks_from_calls(calls: Sequence[KernelCall], modules: dict[str, list[str]], target: TargetSpec) -> list[Task]:
    """Recorded kernel calls as tasks (see :func:`model_tasks`).

    Args:
        calls: from :func:`tpc.torch.ops.record_calls`.
        modules: the module paths of each custom-op key, for the tasks' ``nodes``.
        target: the target the calls must have run on.

    Returns:
        One task per (key, what, dtype, rows), counted, in the order first called.

    Raises:
        ValueError: a call ran kernels of another target.
    """
    counts = Counter((call.key, call.what, call.dtype, call.rows) for call in calls)
    tasks = []
    for (key, what, dtype, rows), count in counts.items():
        if what.startswith(Contraction.kind):
            op, ran_on = contraction_op(key, what)
        else:
            product = compiled_op(key)
            op, ran_on = op_of(product.tp, what), product.target
        if ran_on.fingerprint != target.fingerprint:
            raise ValueError(f"{'+'.join(modules.get(key, ['a product']))} runs kernels for {ran_on.name}, "
                             f"not {target.name}")
        nodes = tuple(modules.get(key, [f"{op.kind} {op.fingerprint[:12]}"]))
        tasks.append(Task(op, rows, count, nodes, dtype))
    return tasks


def tune_model(model: torch.nn.Module, run: Run, *, target: Union[str, dict, TargetSpec] = "host",
               trials: int = 64, strategy: str = "xgb", log_dir: Union[str, Path] = "tuning_logs", seed: int = 0,
               runner: Optional[Any] = None, round_size: int = 8, progress: bool = True) -> GraphTuneResult:
    """Tune every kernel one run of ``model`` calls, ``trials`` measurements in all.

    The tasks are :func:`model_tasks`; they share the budget as a graph's do
    (:func:`tpc.tune.graph.tune_tasks`), each in the dtype it ran in. The records go to the
    schedule cache, where a later :func:`tpc.torch.convert` of the model (in any process)
    finds them for its kernels: the kernels this process compiled for the tuned products
    before are dropped, so they compile again with the tuned schedules on their next call.

    Args:
        model: the model (see :func:`model_tasks`).
        run: runs a model once (see :func:`model_runner`).
        target: the CPU target.
        trials: measurements in all, at least one per task.
        strategy: "xgb" or "random".
        log_dir: the folder of the tasks' tuning logs (resumed when run again).
        seed: the search's seed.
        runner: what measures (default: a local runner).
        round_size: measurements per round.
        progress: print how many kernels and tasks the run has, then a progress line after
            each round, on stderr.

    Returns:
        Every task's tuning, for :func:`tpc.tune.graph.graph_summary`.

    Raises:
        ValueError: as :func:`model_tasks` and :func:`tpc.tune.graph.tune_tasks`.
    """
    tasks = model_tasks(model, run, target=target)
    if progress:
        print(f"one run calls {sum(task.count for task in tasks)} tpc kernels: {len(tasks)} tasks", file=sys.stderr)
    try:
        return tune_tasks(tasks, target=target, trials=trials, strategy=strategy, log_dir=log_dir, seed=seed,
                          runner=runner, round_size=round_size, progress=progress, subject="model")
    finally:
        specs = [task.op.spec if isinstance(task.op, Contraction) else task.tp for task in tasks]
        for spec in {spec.fingerprint: spec for spec in specs}.values():
            if isinstance(spec, SymmetricContractionSpec):
                forget_contraction_kernels(spec)
            else:
                forget_kernels(spec)


def _message(error: BaseException) -> str:
    """An exception's message on one line (a KeyError's key unquoted)."""
    message = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error
    return " ".join(str(message).split()) or type(error).__name__

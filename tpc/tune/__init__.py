"""The autotuner: search space, cost model, search strategies, measurement, records.

``tpc.tune(tp, ...)`` calls :func:`tpc.tune.tuner.tune`: this package is itself callable, so
that the public name and the package name can be the same without importing the tuner
whenever ``tpc`` is imported.
"""

import sys
import types

from tpc.tune.graph import GraphTuneResult, Task, graph_summary, graph_tasks, tune_graph, tune_tasks
from tpc.tune.measure import LocalRunner
from tpc.tune.rpc import RPCRunner
from tpc.tune.tuner import STRATEGIES, TuneResult, summary, tune

__all__ = ["STRATEGIES", "GraphTuneResult", "LocalRunner", "RPCRunner", "Task", "TuneResult", "graph_summary",
           "graph_tasks", "summary", "tune", "tune_graph", "tune_tasks"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> TuneResult:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

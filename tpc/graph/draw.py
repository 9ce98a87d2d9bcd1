"""Pictures of a graph: Graphviz dot text, and an image drawn with matplotlib.

One box per node (its name, operation and output type), an edge per input labelled with the
argument it feeds, and the graph outputs marked. matplotlib is an optional dependency,
imported only when an image is drawn.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import networkx as nx

from tpc.graph.operations import Input

if TYPE_CHECKING:
    from tpc.graph.graph import Graph


def to_dot(graph: "Graph") -> str:
    """Graphviz dot text of ``graph``.

    Args:
        graph: a valid graph.

    Returns:
        One box per node (name, operation, output shape/irreps), edges labelled with the
        argument they feed, one oval per output.
    """
    lines = ["digraph tpc_graph {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
    nodes = graph.nodes()
    for node in nodes:
        shape = "ellipse" if isinstance(node.op, Input) else "box"
        label = f"{node.name}\n{node.op.describe()}\n{node.output.type}"
        lines.append(f"  {_quote('node:' + node.name)} [label={_quote(label)}, shape={shape}];")
    for node in nodes:
        for argument, tensor in zip(node.op.arguments, node.inputs):
            lines.append(f"  {_quote('node:' + tensor.name)} -> {_quote('node:' + node.name)} "
                         f"[label={_quote(argument)}];")
    for output, tensor in graph.outputs.items():
        lines.append(f"  {_quote('output:' + output)} [label={_quote('output ' + output)}, shape=doubleoctagon];")
        lines.append(f"  {_quote('node:' + tensor)} -> {_quote('output:' + output)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(graph: "Graph", path: str | os.PathLike) -> None:
    """Draw ``graph`` into an image file, one row per topological generation.

    Args:
        graph: a valid graph.
        path: the image file; its suffix picks the format (png, svg, pdf, ...).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError('drawing a graph needs matplotlib: pip install "tpc[plot]"') from None
    nodes = {node.name: node for node in graph.nodes()}
    returned: dict[str, list[str]] = {}
    for output, tensor in graph.outputs.items():
        returned.setdefault(tensor, []).append(output)
    dag = graph.dag
    position = {name: index for index, name in enumerate(dag)}
    generations = [sorted(generation, key=position.__getitem__) for generation in nx.topological_generations(dag)]
    width = max(len(generation) for generation in generations)
    figure = Figure(figsize=(3.2 * width + 1, 1.3 * len(generations) + 1), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_xlim(-width / 2, width / 2)
    axes.set_ylim(-len(generations) + 0.5, 0.5)
    boxes = {}
    for depth, generation in enumerate(generations):
        for slot, name in enumerate(generation):
            node = nodes[name]
            label = "\n".join([name, node.op.describe(), str(node.output.type)]
                              + [f"-> output {output}" for output in returned.get(name, [])])
            boxes[name] = axes.text(slot - (len(generation) - 1) / 2, -depth, label, ha="center", va="center",
                                    fontsize=7, family="monospace",
                                    bbox={"boxstyle": "round", "facecolor": "#e8f0fe" if isinstance(
                                        node.op, Input) else "white", "edgecolor": "#555555"})
    for producer, consumer in dag.edges:
        axes.annotate("", xy=(0.5, 1.0), xycoords=boxes[consumer], xytext=(0.5, 0.0), textcoords=boxes[producer],
                      arrowprops={"arrowstyle": "->", "color": "#555555"})
    figure.savefig(path)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'

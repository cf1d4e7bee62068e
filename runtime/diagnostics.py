"""How many collectives a traced step makes: Horovod's ops in a graph, counted.

On a GPU cluster every collective is a launch and a synchronisation of all ranks, so a
step's count matters as much as its bytes. Counting the ops in the traced graph (its
function library included: Horovod puts each gradient all-reduce inside a ``tf.cond``,
and Keras traces ``model.fit``'s step into nested functions) tells what a training
script really runs, with no cluster needed.
"""

from __future__ import annotations

from collections import Counter

import tensorflow as tf

# Horovod's TensorFlow ops that communicate (not rank, size and the like).
COLLECTIVE_OPS = frozenset(
    {
        "HorovodAllgather",
        "HorovodAllreduce",
        "HorovodAlltoall",
        "HorovodBroadcast",
        "HorovodBroadcastInplace",
        "HorovodBroadcastInplaceResource",
        "HorovodGroupedAllgather",
        "HorovodGroupedAllreduce",
        "HorovodGroupedReducescatter",
        "HorovodJoin",
        "HorovodReducescatter",
    }
)


def collective_ops(traced) -> Counter:
    """Horovod collective ops by type in a traced function (or its graph).

    ``traced`` is a concrete function (``step.get_concrete_function(...)``), a
    ``tf.Graph`` or a ``GraphDef``. Functions the graph calls are counted once per
    call site, recursively; both branches of a conditional count.
    """
    if hasattr(traced, "graph"):
        traced = traced.graph
    graph_def = traced.as_graph_def() if isinstance(traced, tf.Graph) else traced
    library = {f.signature.name: f for f in graph_def.library.function}
    counts: Counter = Counter()

    def visit(nodes) -> None:
        for node in nodes:
            if node.op in COLLECTIVE_OPS:
                counts[node.op] += 1
            called = [node.op] if node.op in library else []
            for attr in node.attr.values():
                if attr.HasField("func"):
                    called.append(attr.func.name)
                called += [f.name for f in attr.list.func]
            for name in called:
                if name in library:
                    visit(library[name].node_def)

    visit(graph_def.node)
    return counts

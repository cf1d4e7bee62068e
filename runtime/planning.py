"""Plan in process for the original constructor, ``DistributedEmbedding(embeddings, ...)``.

The placement itself is the planner's; this only describes the given Keras layers as a
spec (one table per layer, one input per ``input_table_map`` entry).
"""

from __future__ import annotations

import tensorflow as tf

from planner import make_plan, spec_from_dict
from planner.plan import Plan
from planner.spec_fields import STRATEGIES
from runtime.embedding import DEFAULT_INITIALIZER


def describe_layer(layer, name: str) -> dict:
    """A spec table for an embedding layer: ``tf.keras.layers.Embedding``, ours, or any
    Keras layer with ``input_dim``, ``output_dim`` and ``get_config`` (as upstream takes)."""
    dtype = tf.as_dtype(getattr(layer, "variable_dtype", None) or layer.dtype or "float32").name
    return {
        "name": name,
        "rows": int(layer.input_dim),
        "width": int(layer.output_dim),
        "combiner": getattr(layer, "combiner", None),
        "dtype": dtype,
        "initializer": tf.keras.initializers.serialize(layer_initializer(layer)),
    }


def layer_initializer(layer) -> tf.keras.initializers.Initializer:
    """The initializer of the table an embedding layer describes.

    Its ``embeddings_initializer``, as an attribute (Keras' and our layers) or in its
    config (a custom layer may keep it only there); else the default of
    ``tf.keras.layers.Embedding`` and ``runtime.Embedding``, ``uniform``. A custom layer
    gets no say in how the runtime stores and looks up the table, only in its start.
    """
    initializer = getattr(layer, "embeddings_initializer", None)
    if initializer is None:
        initializer = layer.get_config().get("embeddings_initializer")
    return tf.keras.initializers.get(initializer or DEFAULT_INITIALIZER)


def plan_for_layers(
    embeddings: list,
    world_size: int,
    strategy: str = "basic",
    column_slice_threshold: int | None = None,
    row_slice_threshold: int | None = None,
    data_parallel_threshold: int | None = None,
    dp_input: bool = True,
    input_table_map: list[int] | None = None,
    gpu_embedding_size: int | None = None,
) -> Plan:
    """The plan the planner makes for these layers on ``world_size`` ranks.

    ``gpu_embedding_size`` is upstream's offload setting: the spec key of that name,
    which offloads the same table-parallel pieces upstream does (``offload: upstream``).
    """
    if strategy not in STRATEGIES:  # upstream's error, for scripts that match on it
        raise ValueError(
            f"Unsupported shard strategy {strategy!r}; use one of {', '.join(STRATEGIES)}"
        )
    names = _unique_names(embeddings)
    tables = [describe_layer(layer, name) for layer, name in zip(embeddings, names, strict=True)]
    if input_table_map is None:
        input_table_map = list(range(len(embeddings)))
    for position, table in enumerate(input_table_map):
        if not 0 <= table < len(embeddings):
            raise ValueError(
                f"input_table_map[{position}] = {table} is not a table index; use 0.."
                f"{len(embeddings) - 1}"
            )
    inputs = [
        {"name": f"input_{i}", "table": names[table]} for i, table in enumerate(input_table_map)
    ]
    spec = spec_from_dict(
        {
            "world_size": world_size,
            "strategy": strategy,
            "column_slice_threshold": column_slice_threshold,
            "row_slice_threshold": row_slice_threshold,
            "data_parallel_threshold": data_parallel_threshold,
            "dp_input": dp_input,
            "gpu_embedding_size": gpu_embedding_size,
            "tables": tables,
            "inputs": inputs,
        },
        source="DistributedEmbedding",
    )
    return make_plan(spec)


def _unique_names(embeddings: list) -> list[str]:
    """Layer names, made unique by position where two layers share one."""
    names = [layer.name for layer in embeddings]
    if len(set(names)) == len(names):
        return names
    return [f"table_{i}" for i in range(len(embeddings))]

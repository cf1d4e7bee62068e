"""A single-process embedding layer with a combiner.

``tf.keras.layers.Embedding`` has no combiner, so multi-hot and ragged ids need this
layer to describe a table (``DistributedEmbedding(embeddings=[...])``) or to run one
without distribution. Its lookups are the runtime's own (:mod:`runtime.lookup`).
"""

from __future__ import annotations

import tensorflow as tf

from runtime.lookup import describe_input, lookup, to_ids


class Embedding(tf.keras.layers.Layer):
    """``input_dim`` rows of ``output_dim`` columns; ``combiner`` None, "sum" or "mean"."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer="uniform",
        combiner: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if combiner not in (None, "sum", "mean"):
            raise ValueError(f"combiner must be None, 'sum' or 'mean', got {combiner!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)
        self.combiner = combiner

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=[self.input_dim, self.output_dim],
            initializer=self.embeddings_initializer,
            dtype=self.dtype,
            experimental_autocast=False,
        )
        self.built = True

    def call(self, inputs):
        problem, hotness = describe_input(inputs)
        if problem:
            raise ValueError(f"{self.name}: {problem.text()}")
        if self.combiner is None and (hotness is None or hotness > 1):
            raise ValueError(f"{self.name}: several ids per sample need combiner 'sum' or 'mean'")
        out = lookup(self.embeddings, to_ids(inputs), self.combiner)
        return tf.cast(out, self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            output_dim=self.output_dim,
            embeddings_initializer=tf.keras.initializers.serialize(self.embeddings_initializer),
            combiner=self.combiner,
        )
        return config

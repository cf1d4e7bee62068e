"""Single-process embedding layers with upstream's interface: ``Embedding`` and
``ConcatOneHotEmbedding``.

``tf.keras.layers.Embedding`` has no combiner, so multi-hot, ragged and sparse ids need
``Embedding`` to describe a table (``DistributedEmbedding(embeddings=[...])``) or to run
one without distribution. Both layers take upstream's constructor arguments, so a
script written for ``distributed_embeddings.python.layers.embedding`` runs with its
import changed. Upstream's ``use_custom_kernel`` chooses its CUDA lookup kernel; the
runtime has only stock TensorFlow ops, so the flag is kept (and serialized) but selects
nothing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from runtime.lookup import Ids, lookup

COMBINERS = (None, "sum", "mean")
DEFAULT_INITIALIZER = "uniform"  # Keras Embedding's and upstream's


class Embedding(tf.keras.layers.Layer):
    """``input_dim`` rows of ``output_dim`` columns, looked up by integer ids.

    Without a combiner every id gets its row: ids shaped ``(d1, ..., dn)`` give
    ``(d1, ..., dn, output_dim)``, ragged ids a ragged result, a ``tf.SparseTensor`` of
    ids a ``tf.SparseTensor`` of rows at the ids' positions. With ``combiner`` "sum" or
    "mean" the last id axis is reduced: ``(d1, ..., dn)`` (n >= 2) gives
    ``(d1, ..., dn-1, output_dim)``, and 2-D ragged or sparse ids ``(batch,
    output_dim)``; a sample without ids gives zeros. 1-D ids with a combiner are
    refused, as upstream refuses them: they have no id axis to reduce.

    Like upstream's layer (and Keras'), it declares a ``(batch, None)`` input unless
    given ``input_shape``, so a ``Sequential`` model builds it at once and
    ``set_weights`` works before the first call. Outputs are in the compute dtype of
    the layer's policy; the weight stays in its variable dtype.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer=DEFAULT_INITIALIZER,
        embeddings_regularizer=None,
        activity_regularizer=None,
        embeddings_constraint=None,
        combiner: str | None = None,
        use_custom_kernel: bool = True,
        **kwargs,
    ):
        if "input_shape" not in kwargs and "batch_input_shape" not in kwargs:
            kwargs["input_shape"] = (None,)
        if input_dim <= 0 or output_dim <= 0:
            raise ValueError(
                f"Both input_dim and output_dim should be positive, found {input_dim} and "
                f"{output_dim}"
            )
        if combiner not in COMBINERS:
            raise ValueError(f"combiner must be None, 'sum' or 'mean', got {combiner!r}")
        kwargs["autocast"] = False  # float ids (from a Keras Input) must not become float16
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = tf.keras.regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = tf.keras.constraints.get(embeddings_constraint)
        self.combiner = combiner
        self.use_custom_kernel = bool(use_custom_kernel)

    @property
    def embeddings_initializer_cpu(self) -> tf.keras.initializers.Initializer:
        """The initializer, run on the host: a table's one-time random init then never
        needs device memory beyond the table itself (upstream's attribute)."""
        return _OnHost(self.embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer_cpu,
            regularizer=self.embeddings_regularizer,
            constraint=self.embeddings_constraint,
            experimental_autocast=False,
        )
        self.built = True

    def compute_output_shape(self, input_shape) -> tf.TensorShape:
        shape = tf.TensorShape(input_shape)
        if self.combiner is not None:
            shape = shape[:-1]
        return shape.concatenate([self.output_dim])

    def call(self, inputs):
        return _cast(embed(self.embeddings, inputs, self.combiner), self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            output_dim=self.output_dim,
            embeddings_initializer=tf.keras.initializers.serialize(self.embeddings_initializer),
            embeddings_regularizer=tf.keras.regularizers.serialize(self.embeddings_regularizer),
            activity_regularizer=tf.keras.regularizers.serialize(self.activity_regularizer),
            embeddings_constraint=tf.keras.constraints.serialize(self.embeddings_constraint),
            combiner=self.combiner,
            use_custom_kernel=self.use_custom_kernel,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> Embedding:
        """Also takes a ``tf.keras.layers.Embedding`` config, as upstream's does.

        ``input_length`` only shapes Keras' output and is dropped; ``mask_zero`` and
        ``sparse`` set to true would change results and are refused rather than dropped.
        """
        config = dict(config)
        config.pop("input_length", None)
        for option in ("mask_zero", "sparse"):
            if config.pop(option, False):
                raise ValueError(
                    f"{option}=True of tf.keras.layers.Embedding has no equivalent in "
                    f"runtime.Embedding; set it to False"
                )
        return cls(**config)


class ConcatOneHotEmbedding(tf.keras.layers.Layer):
    """One-hot features whose tables share one width, stored in one weight.

    ``feature_sizes[i]`` rows belong to feature i, stacked in order in ``params``;
    ``offsets`` holds each feature's first row (and the total at the end). Ids
    ``[batch, len(feature_sizes)]``, column i in ``0..feature_sizes[i]-1``, give
    ``[batch, len(feature_sizes), embedding_width]``: one gather for all features. The
    weight exists from construction on (upstream's layer creates it there too).
    """

    def __init__(self, feature_sizes: list[int], embedding_width: int, **kwargs):
        kwargs.setdefault("dtype", tf.float32)
        super().__init__(**kwargs)
        self.feature_sizes = [int(size) for size in feature_sizes]
        if not self.feature_sizes or min(self.feature_sizes) <= 0 or embedding_width <= 0:
            raise ValueError(
                f"feature_sizes must be positive row counts and embedding_width positive, got "
                f"{feature_sizes} and {embedding_width}"
            )
        self.embedding_width = int(embedding_width)
        offsets = np.cumsum([0, *self.feature_sizes])
        self.offsets = tf.constant(offsets, dtype=tf.int64 if offsets[-1] >= 2**31 else tf.int32)
        self.params = self.add_weight(
            "params", shape=[int(offsets[-1]), self.embedding_width], initializer="glorot_uniform"
        )

    def call(self, inputs):
        features = len(self.feature_sizes)
        if inputs.shape.rank != 2 or inputs.shape[1] != features:
            raise ValueError(
                f"{self.name}: ids must be [batch, {features}] (one column per feature), got "
                f"shape {inputs.shape}"
            )
        inputs = _integer_ids(inputs, self.offsets.dtype)
        if self.offsets.dtype == tf.int64:
            inputs = tf.cast(inputs, tf.int64)
        return tf.gather(self.params, inputs + tf.cast(self.offsets[:-1], inputs.dtype))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(feature_sizes=self.feature_sizes, embedding_width=self.embedding_width)
        return config


def embed(weight: tf.Variable, ids, combiner: str | None):
    """Rows of ``weight`` for dense, ragged or sparse ``ids``, reduced by ``combiner``.

    The shapes are :class:`Embedding`'s. Ragged and sparse ids with a combiner go
    through :func:`runtime.lookup.lookup`, the distributed layer's own lookup, so a
    sample combines the same way in one process as over many ranks.
    """
    ids = _integer_ids(ids, tf.int64 if weight.shape[0] > 2**31 - 1 else tf.int32)
    if isinstance(ids, tf.SparseTensor):
        if ids.shape.rank != 2:
            raise ValueError(f"sparse ids must be 2-D, [batch, ids], got shape {ids.shape}")
        if combiner is None:
            return _sparse_rows(weight, ids)
        ids = tf.sparse.reorder(ids)
        batch = tf.cast(ids.dense_shape[0], tf.int32)
        samples = tf.cast(ids.indices[:, 0], tf.int32)
        lengths = tf.math.bincount(samples, minlength=batch, maxlength=batch)
        return lookup(weight, Ids(ids.values, lengths, None), combiner)
    if combiner is None:
        return tf.gather(weight, ids)
    if isinstance(ids, tf.RaggedTensor):
        if ids.shape.rank != 2:
            raise ValueError(
                f"ragged ids with a combiner must be 2-D, [batch, (ids)], got a "
                f"{ids.shape.rank}-D ragged tensor"
            )
        return lookup(weight, Ids(ids.values, ids.row_lengths(), None), combiner)
    if ids.shape.rank is None or ids.shape.rank < 2:
        raise ValueError(
            f"ids shaped {ids.shape} with combiner {combiner!r} are ambiguous: give them an "
            f"axis of ids to combine, e.g. [batch, 1]"
        )
    total = tf.reduce_sum(tf.gather(weight, ids), axis=-2)
    if combiner == "mean":
        count = tf.cast(tf.shape(ids)[-1], total.dtype)
        total = tf.math.divide_no_nan(total, count)
    return total


def _sparse_rows(weight: tf.Variable, ids: tf.SparseTensor) -> tf.SparseTensor:
    """[batch, k, width] sparse: each id's row at the id's position, nothing elsewhere."""
    width = int(weight.shape[1])
    rows = tf.gather(weight, ids.values)
    positions = tf.repeat(ids.indices, width, axis=0)
    columns = tf.tile(tf.range(width, dtype=tf.int64), [tf.shape(ids.values)[0]])
    return tf.SparseTensor(
        tf.concat([positions, columns[:, None]], axis=1),
        tf.reshape(rows, [-1]),
        tf.concat([ids.dense_shape, [width]], axis=0),
    )


def _integer_ids(ids, dtype: tf.DType):
    """Ids as given when int32 or int64, else cast (a Keras Input feeds floats)."""
    if ids.dtype in (tf.int32, tf.int64):
        return ids
    return tf.cast(ids, dtype)


def _cast(out, dtype: tf.DType):
    return out if out.dtype == dtype else tf.cast(out, dtype)


class _OnHost(tf.keras.initializers.Initializer):
    """Run an initializer on the host CPU."""

    def __init__(self, initializer: tf.keras.initializers.Initializer):
        self.initializer = initializer

    def __call__(self, shape, dtype=None, **kwargs):
        with tf.device("/CPU:0"):
            return self.initializer(shape, dtype=dtype, **kwargs)

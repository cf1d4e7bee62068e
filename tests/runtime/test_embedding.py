"""runtime.Embedding and ConcatOneHotEmbedding in one process, against NumPy.

Expected values are computed here from the table with NumPy indexing: a row per id
without a combiner, the sum or mean of a sample's rows with one.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf

from runtime import ConcatOneHotEmbedding, Embedding

pytestmark = pytest.mark.runtime

ROWS, WIDTH = 7, 3
TABLE = np.arange(ROWS * WIDTH, dtype=np.float32).reshape(ROWS, WIDTH) / 4 - 2
RNG = np.random.default_rng(0)


def layer(combiner=None, **kwargs) -> Embedding:
    return Embedding(ROWS, WIDTH, combiner=combiner, weights=[TABLE], **kwargs)


def reduce(rows: np.ndarray, combiner: str) -> np.ndarray:
    """Sum or mean of a sample's rows [k, width]; zeros for no rows."""
    if len(rows) == 0:
        return np.zeros(WIDTH, np.float32)
    return rows.sum(0) if combiner == "sum" else rows.mean(0)


# --- dense ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4), (2, 1, 3, 2)])
@pytest.mark.parametrize("dtype", [tf.int32, tf.int64, tf.float32])
def test_dense_ids_without_combiner_get_a_row_each(shape, dtype):
    ids = RNG.integers(0, ROWS, size=shape)
    out = layer()(tf.constant(ids, dtype))
    assert out.shape == (*shape, WIDTH)
    np.testing.assert_array_equal(out.numpy(), TABLE[ids])


@pytest.mark.parametrize("shape", [(4, 3), (5, 1), (2, 3, 4), (2, 1, 3, 2)])
@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_dense_ids_with_combiner_reduce_the_last_axis(shape, combiner):
    ids = RNG.integers(0, ROWS, size=shape)
    out = layer(combiner)(tf.constant(ids, tf.int64))
    flat = ids.reshape(-1, shape[-1])
    want = np.stack([reduce(TABLE[row], combiner) for row in flat]).reshape(*shape[:-1], WIDTH)
    assert out.shape == (*shape[:-1], WIDTH)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)


def test_one_dimensional_ids_with_a_combiner_are_refused():
    with pytest.raises(ValueError, match="ambiguous"):
        layer("sum")(tf.constant([1, 2]))


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_hotness_unknown_when_traced(combiner):
    embedding = layer(combiner)
    spec = tf.TensorSpec([None, None], tf.int32)
    traced = tf.function(embedding, input_signature=[spec])
    ids = np.array([[1, 2, 2], [0, 6, 3]])
    want = np.stack([reduce(TABLE[row], combiner) for row in ids])
    np.testing.assert_allclose(traced(tf.constant(ids, tf.int32)).numpy(), want, rtol=1e-6)


# --- ragged and sparse ids ------------------------------------------------------------------

SAMPLES = [[1, 2, 2], [], [6], [0, 5, 3, 3]]


def test_ragged_ids_without_combiner_give_ragged_rows():
    out = layer()(tf.ragged.constant(SAMPLES, dtype=tf.int64))
    assert isinstance(out, tf.RaggedTensor)
    for got, sample in zip(out.to_list(), SAMPLES, strict=True):
        np.testing.assert_array_equal(np.reshape(got, (-1, WIDTH)), TABLE[sample])


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_ragged_ids_with_combiner(combiner):
    out = layer(combiner)(tf.ragged.constant(SAMPLES, dtype=tf.int32))
    want = np.stack([reduce(TABLE[s], combiner) for s in SAMPLES])
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)


def test_nested_ragged_ids_with_a_combiner_are_refused():
    nested = tf.RaggedTensor.from_row_lengths(tf.ragged.constant(SAMPLES), [2, 2])
    with pytest.raises(ValueError, match="2-D"):
        layer("sum")(nested)


# Out of order, with gaps inside rows (not right-ragged) and an empty row 1.
SPARSE_INDICES = [[2, 3], [0, 0], [3, 0], [0, 2], [3, 1], [0, 1], [2, 0]]
SPARSE_VALUES = [4, 1, 0, 2, 5, 6, 3]


def sparse_ids(dtype=tf.int64) -> tf.SparseTensor:
    return tf.SparseTensor(SPARSE_INDICES, tf.constant(SPARSE_VALUES, dtype), [4, 5])


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_sparse_ids_with_combiner_reduce_each_row(combiner):
    out = layer(combiner)(sparse_ids(tf.int32))
    per_row = [[] for _ in range(4)]
    for (row, _), value in zip(SPARSE_INDICES, SPARSE_VALUES, strict=True):
        per_row[row].append(value)
    want = np.stack([reduce(TABLE[ids], combiner) for ids in per_row])
    assert out.shape == (4, WIDTH)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)


def test_sparse_ids_without_combiner_give_rows_at_their_positions():
    out = layer()(sparse_ids())
    assert isinstance(out, tf.SparseTensor)
    want = np.zeros((4, 5, WIDTH), np.float32)
    for (row, col), value in zip(SPARSE_INDICES, SPARSE_VALUES, strict=True):
        want[row, col] = TABLE[value]
    np.testing.assert_array_equal(tf.sparse.to_dense(tf.sparse.reorder(out)).numpy(), want)


# --- in Keras models ---------------------------------------------------------------------


def test_sequential_builds_it_so_weights_can_be_set_before_a_call():
    embedding = Embedding(ROWS, WIDTH)
    model = tf.keras.Sequential([embedding])
    embedding.set_weights([TABLE])
    ids = np.array([[0, 6], [3, 3]])
    np.testing.assert_array_equal(model.predict(ids, verbose=0), TABLE[ids])
    np.testing.assert_array_equal(model(tf.constant([2, 5])).numpy(), TABLE[[2, 5]])


@pytest.mark.parametrize("kind", ["ragged", "sparse"])
def test_functional_model_with_ragged_or_sparse_input(kind):
    inputs = tf.keras.Input(shape=(None,), dtype=tf.int64, **{kind: True})
    model = tf.keras.Model(inputs, layer("mean")(inputs))
    # Keras' data adapter needs sparse indices in order; the layer alone does not.
    ids = tf.ragged.constant(SAMPLES, dtype=tf.int64)
    if kind == "sparse":
        ids = tf.sparse.reorder(sparse_ids())
    got = model.predict(ids, verbose=0)
    np.testing.assert_allclose(got, layer("mean")(ids).numpy(), rtol=1e-6)


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_gradient_counts_each_id(combiner):
    embedding = layer(combiner)
    ids = np.array([[0, 1, 0], [4, 4, 4]])
    upstream = RNG.normal(size=(2, WIDTH)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(embedding(tf.constant(ids)) * upstream)
    grad = tf.convert_to_tensor(tape.gradient(loss, embedding.embeddings)).numpy()
    want = np.zeros_like(TABLE)
    for sample, row_grad in zip(ids, upstream, strict=True):
        for i in sample:
            want[i] += row_grad / (len(sample) if combiner == "mean" else 1)
    np.testing.assert_allclose(grad, want, rtol=1e-6)


def test_mixed_precision_outputs_in_the_compute_dtype():
    embedding = layer("sum", dtype="mixed_float16")
    out = embedding(tf.constant([[1, 2]]))
    assert embedding.embeddings.dtype == tf.float32
    assert out.dtype == tf.float16
    np.testing.assert_allclose(out.numpy(), TABLE[[1, 2]].sum(0)[None], rtol=1e-3)


# --- upstream's arguments ------------------------------------------------------------------


def test_regularizers_add_losses():
    embedding = layer(
        "sum",
        embeddings_regularizer=tf.keras.regularizers.L2(0.1),
        activity_regularizer=tf.keras.regularizers.L1(0.5),
    )
    out = embedding(tf.constant([[1, 2], [3, 3]]))
    losses = sorted(float(x) for x in embedding.losses)
    # Keras divides an activity penalty by the batch size (2 here).
    activity = 0.5 * float(np.abs(out.numpy()).sum()) / 2
    want = sorted([0.1 * float((TABLE**2).sum()), activity])
    np.testing.assert_allclose(losses, want, rtol=1e-5)


def test_constraint_applies_after_an_optimizer_step():
    embedding = layer(embeddings_constraint=tf.keras.constraints.NonNeg())
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(embedding(tf.constant([0, 1])))
    grads = tape.gradient(loss, embedding.trainable_weights)
    tf.keras.optimizers.SGD(0.1).apply_gradients(
        zip(grads, embedding.trainable_weights, strict=True)
    )
    stepped = TABLE.copy()
    stepped[[0, 1]] -= 0.1
    np.testing.assert_allclose(embedding.embeddings.numpy(), np.maximum(stepped, 0), rtol=1e-6)


@pytest.mark.parametrize("use_custom_kernel", [True, False])
def test_use_custom_kernel_is_kept_and_changes_nothing(use_custom_kernel):
    embedding = layer("mean", use_custom_kernel=use_custom_kernel)
    assert embedding.get_config()["use_custom_kernel"] is use_custom_kernel
    np.testing.assert_allclose(
        embedding(tf.constant([[2, 4]])).numpy(), TABLE[[2, 4]].mean(0)[None], rtol=1e-6
    )


def test_config_round_trip_keeps_every_argument():
    embedding = Embedding(
        ROWS, WIDTH,
        embeddings_initializer=tf.keras.initializers.Constant(0.5),
        embeddings_regularizer="l2",
        activity_regularizer=tf.keras.regularizers.L1(0.25),
        embeddings_constraint="non_neg",
        combiner="mean",
        use_custom_kernel=False,
        dtype="float64",
        name="user_id",
    )
    config = embedding.get_config()
    again = Embedding.from_config(config)
    assert again.get_config() == config
    assert (again.name, again.dtype, again.combiner) == ("user_id", "float64", "mean")
    again.build(None)
    np.testing.assert_array_equal(again.embeddings.numpy(), np.full((ROWS, WIDTH), 0.5))


def test_from_a_keras_embedding_config():
    keras = tf.keras.layers.Embedding(ROWS, WIDTH, embeddings_initializer="ones", input_length=4)
    ours = Embedding.from_config(keras.get_config())
    assert (ours.input_dim, ours.output_dim, ours.combiner) == (ROWS, WIDTH, None)
    ours.build(None)
    np.testing.assert_array_equal(ours.embeddings.numpy(), np.ones((ROWS, WIDTH)))
    with pytest.raises(ValueError, match="mask_zero=True"):
        Embedding.from_config(tf.keras.layers.Embedding(2, 2, mask_zero=True).get_config())


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 4), "positive"),
        ((4, -1), "positive"),
        ((4, 4, "uniform", None, None, None, "max"), "combiner"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        Embedding(*args)


def test_output_shape_without_calling():
    assert Embedding(3, 5).compute_output_shape((8, 2)) == (8, 2, 5)
    assert Embedding(3, 5, combiner="sum").compute_output_shape((8, 2)) == (8, 5)


# --- ConcatOneHotEmbedding -----------------------------------------------------------------

SIZES = [3, 5, 2, 4]


def test_concat_one_hot_reads_each_feature_from_its_rows():
    layer_ = ConcatOneHotEmbedding(SIZES, 6)
    params = RNG.normal(size=(sum(SIZES), 6)).astype(np.float32)
    layer_.set_weights([params])  # the weight exists from construction on
    ids = np.stack([RNG.integers(0, size, size=5) for size in SIZES], axis=1)
    first_rows = np.cumsum([0, *SIZES[:-1]])
    for dtype in (tf.int32, tf.int64):
        out = layer_(tf.constant(ids, dtype))
        assert out.shape == (5, len(SIZES), 6)
        np.testing.assert_array_equal(out.numpy(), params[ids + first_rows])


def test_concat_one_hot_refuses_a_wrong_feature_count():
    with pytest.raises(ValueError, match=r"\[batch, 4\]"):
        ConcatOneHotEmbedding(SIZES, 2)(tf.constant([[0, 1, 1]]))


def test_concat_one_hot_config_round_trip():
    layer_ = ConcatOneHotEmbedding(SIZES, 6, name="features")
    again = ConcatOneHotEmbedding.from_config(layer_.get_config())
    assert again.get_config() == layer_.get_config()
    assert again.params.shape == (sum(SIZES), 6)

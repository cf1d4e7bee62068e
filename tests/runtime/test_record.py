"""The input record's int64 id travels as two int32 words and comes back whole."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

import tensorflow as tf

from runtime.agreement import _words
from runtime.checks import join_words

pytestmark = pytest.mark.runtime


@pytest.mark.parametrize("value", [0, 25, -3, 2**31, 2**40 + 5, -(2**40), 2**63 - 1, -(2**63)])
def test_an_id_split_into_words_joins_back(value):
    high, low = _words(tf.constant(value, tf.int64))
    assert high.dtype == low.dtype == tf.int32
    assert join_words(int(high), int(low)) == value

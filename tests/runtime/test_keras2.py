"""The runtime refuses, at import, a tf.keras that is not Keras 2 (TensorFlow 2.16+)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf

from runtime.keras2 import require_keras2

pytestmark = pytest.mark.runtime


def test_keras2_passes() -> None:
    require_keras2()  # this environment's tf.keras is Keras 2, or the runtime could not run


def test_keras3_is_refused_with_the_fix(monkeypatch) -> None:
    package = tf.keras.__name__.split(".")[0]  # keras (TensorFlow 2.15) or tf_keras
    monkeypatch.setitem(sys.modules, package, SimpleNamespace(__version__="3.1.0"))
    with pytest.raises(ImportError, match=r"Keras 3\.1\.0: .*tf-keras.*TF_USE_LEGACY_KERAS=1"):
        require_keras2()

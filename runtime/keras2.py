"""The runtime needs Keras 2 as ``tf.keras``: checked once, at import.

The layer and Horovod's Keras integration are Keras 2 code. TensorFlow 2.15 ships
Keras 2 as ``tf.keras``. From 2.16 on ``tf.keras`` is Keras 3 unless the environment has
``TF_USE_LEGACY_KERAS=1`` before anything uses ``tf.keras`` (``import
horovod.tensorflow`` does), and Keras 2 then comes from the ``tf-keras`` package.
Without this check a wrong Keras fails much later, deep inside Horovod or the layer.
"""

from __future__ import annotations

import sys

import tensorflow as tf


def require_keras2() -> None:
    """Raise ImportError unless ``tf.keras`` is Keras 2 (package ``keras`` or ``tf_keras``)."""
    package = sys.modules[tf.keras.__name__.split(".")[0]]
    version = str(getattr(package, "__version__", "unknown"))
    if not version.startswith("2."):
        raise ImportError(
            f"the runtime needs Keras 2, but tf.keras is Keras {version}: with TensorFlow "
            "2.16 or later, install tf-keras and set TF_USE_LEGACY_KERAS=1 in the environment"
        )


require_keras2()

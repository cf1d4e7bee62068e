"""planner/initializers.py against the installed Keras, so the two cannot drift apart.

The planner checks initializers without TensorFlow, from its own table; here that table
meets Keras 2.15: the same names, each naming the same class, the same arguments in the
same order, and every name and config the planner accepts builds a Keras initializer
that fills a weight with finite numbers, as the runtime builds tables.
"""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("tensorflow")

import numpy as np
import tensorflow as tf
from keras.src import initializers as keras_initializers

from planner.initializers import ARGUMENTS, NAMES, check_initializer

pytestmark = pytest.mark.runtime

# Values to try for every argument: each one the planner accepts must build in Keras.
CANDIDATES = [
    0.5,
    -0.25,
    2,
    7,
    None,
    "fan_in",
    "fan_out",
    "fan_avg",
    "uniform",
    "normal",
    "truncated_normal",
    "untruncated_normal",
    "NORMAL",
]


def keras_builtins() -> dict[str, type]:
    """Every name tf.keras.initializers.get resolves to a built-in, less the abstract base."""
    keras_initializers.populate_deserializable_objects()
    base = keras_initializers.initializers.Initializer
    return {
        name: cls for name, cls in keras_initializers.LOCAL.ALL_OBJECTS.items() if cls is not base
    }


def constructor_arguments(cls: type) -> list[str]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in parameters if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]


def fills_a_weight(identifier: object) -> None:
    initializer = tf.keras.initializers.get(identifier)
    values = initializer(shape=(4, 3), dtype=tf.float32).numpy()
    assert values.shape == (4, 3) and np.isfinite(values).all(), identifier


def test_the_same_names_name_the_same_classes() -> None:
    builtins = keras_builtins()
    assert set(NAMES) == set(builtins)
    assert {name: builtins[name].__name__ for name in builtins} == NAMES


def test_the_same_arguments() -> None:
    builtins = keras_builtins()
    for class_name, arguments in ARGUMENTS.items():
        assert list(arguments) == constructor_arguments(builtins[class_name]), class_name


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_name_builds(name: str) -> None:
    assert check_initializer(name) == name
    fills_a_weight(name)


@pytest.mark.parametrize("class_name", sorted(ARGUMENTS))
def test_every_accepted_config_builds(class_name: str) -> None:
    fills_a_weight({"class_name": class_name, "config": {}})
    for argument in ARGUMENTS[class_name]:
        accepted = []
        for value in CANDIDATES:
            config = {"class_name": class_name, "config": {argument: value}}
            try:
                check_initializer(config)
            except ValueError:
                continue
            accepted.append(value)
            fills_a_weight(config)
        assert accepted, (class_name, argument)
    # the form Keras 2.15 itself writes when it serializes an initializer
    serialized = tf.keras.initializers.serialize(tf.keras.initializers.get(class_name))
    assert check_initializer(serialized) == serialized
    fills_a_weight(serialized)


@pytest.mark.parametrize(
    ("config", "refused_by_keras"),
    [
        ({"class_name": "VarianceScaling", "config": {"scale": 0}}, True),
        ({"class_name": "VarianceScaling", "config": {"mode": "fan_all"}}, True),
        ({"class_name": "VarianceScaling", "config": {"distribution": "cauchy"}}, True),
        ({"class_name": "RandomNormal", "config": {"stdev": 1.0}}, True),
        ({"class_name": "Zeros"}, True),
        ("glorot", True),
        ("ZEROS", True),
        # Keras builds these, and the weights they fill are useless or the build fails late
        ({"class_name": "RandomNormal", "config": {"stddev": float("nan")}}, False),
        ({"class_name": "Constant", "config": {"value": [1.0, 2.0]}}, False),
    ],
)
def test_what_the_planner_refuses(config: object, refused_by_keras: bool) -> None:
    with pytest.raises(ValueError):
        check_initializer(config)
    if refused_by_keras:
        with pytest.raises((ValueError, TypeError)):
            fills_a_weight(config)

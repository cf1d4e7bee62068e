"""Optimizer slots: which model variable each one belongs to, and under which name.

Keras optimizers create every slot through one method: ``add_slot`` (legacy
optimizers) or ``add_variable_from_reference`` (Keras 2.15 optimizers). Wrapping those
two, once, lets the runtime

* mark the slots of a model-parallel (``de_local``) variable local too, so Horovod
  never broadcasts or averages them (their shapes differ between ranks);
* create the slots of a variable placed on a device of its own (``de_device``: an
  offloaded weight, on the host) on that device, beside it;
* find a variable's slots by identity and name, for both optimizer families alike (the
  new ones have no ``get_slot``), to save and restore them;
* fill slots from a checkpoint the moment an optimizer creates them, when they were
  restored before the optimizer's first step.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import tensorflow as tf

# Slot-creating methods: class, method, name of the variable argument, of the name argument.
_SLOT_CREATORS = (
    (tf.keras.optimizers.legacy.Optimizer, "add_slot", "var", "slot_name"),
    (
        tf.keras.optimizers.Optimizer,
        "add_variable_from_reference",
        "model_variable",
        "variable_name",
    ),
)

# Called with (optimizer, variable, slot name, slot) after every slot creation.
SlotListener = Callable[[object, tf.Variable, str, tf.Variable], None]
_listeners: list[SlotListener] = []


def mark_local(var) -> None:
    """Mark a model-parallel variable: never broadcast or averaged, nor its optimizer slots."""
    track_slots()
    var.de_local = True


def is_local(var) -> bool:
    """True for a model-parallel variable, or an optimizer slot of one."""
    return bool(getattr(var, "de_local", False))


def track_slots() -> None:
    """Wrap the Keras optimizers' slot-creating methods (once)."""
    for cls, method, var_argument, name_argument in _SLOT_CREATORS:
        create = getattr(cls, method)
        if getattr(create, "_tracks_slots", False):
            continue

        @functools.wraps(create)
        def creating(
            self, *args, _create=create, _var=var_argument, _name=name_argument, **kwargs
        ):
            var = kwargs[_var] if _var in kwargs else args[0]
            name = kwargs[_name] if _name in kwargs else args[1]
            device = getattr(var, "de_device", None)
            with tf.device(device) if device else contextlib.nullcontext():
                slot = _create(self, *args, **kwargs)
            slot.de_slot_of = (var, name)
            if is_local(var):
                slot.de_local = True
            for listener in list(_listeners):
                listener(self, var, name, slot)
            return slot

        creating._tracks_slots = True
        setattr(cls, method, creating)


def add_listener(listener: SlotListener) -> None:
    track_slots()
    if listener not in _listeners:
        _listeners.append(listener)


def unwrap(optimizer):
    """The optimizer that owns the slots (a loss-scale optimizer's inner one)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def is_legacy(optimizer) -> bool:
    return isinstance(unwrap(optimizer), tf.keras.optimizers.legacy.Optimizer)


def optimizer_variables(optimizer) -> list[tf.Variable]:
    variables = unwrap(optimizer).variables
    return list(variables() if callable(variables) else variables)


def slots_of(optimizer, var) -> dict[str, tf.Variable]:
    """The optimizer's slots of ``var``, by slot name, in creation order."""
    found = {}
    for slot in optimizer_variables(optimizer):
        owner = getattr(slot, "de_slot_of", None)
        if owner is not None and owner[0] is var:
            found[owner[1]] = slot
    return found


def is_built(optimizer) -> bool:
    """Whether a Keras 2.15 optimizer has created its slots (legacy ones create them per
    variable, any time)."""
    return is_legacy(optimizer) or bool(getattr(unwrap(optimizer), "_built", False))


def create_slots(optimizer, variables: list[tf.Variable]) -> None:
    """Create the optimizer's slots for ``variables`` now, as its first step would.

    A Keras 2.15 optimizer builds once, for every variable it will ever update, so pass
    all the model's trainable variables; legacy optimizers add slots per variable.
    """
    inner = unwrap(optimizer)
    with tf.init_scope():
        if is_legacy(inner):
            inner._create_all_weights(variables)
        elif not is_built(inner):
            inner.build(variables)

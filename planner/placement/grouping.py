"""Step 1: split tables into data-parallel, table-parallel and row-sliced groups by size.

Inputs follow the group of the table they read.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.spec import InputSpec, Spec, TableSpec


@dataclass(frozen=True)
class EffectiveThresholds:
    """Thresholds after the rules that switch them off (one rank, model-parallel input)."""

    data_parallel: int | None
    row_slice: int | None


@dataclass(frozen=True)
class TableGroups:
    """Table indices (spec order) of each execution group."""

    data_parallel: list[int]
    table_parallel: list[int]
    row_sliced: list[int]


def effective_thresholds(spec: Spec) -> EffectiveThresholds:
    """With one rank or model-parallel input every table is table-parallel.

    Data-parallel and row-sliced tables need every rank to see every input's ids, which
    only data-parallel input gives; with one rank there is nothing to split.
    """
    if spec.world_size == 1 or not spec.dp_input:
        return EffectiveThresholds(data_parallel=None, row_slice=None)
    return EffectiveThresholds(
        data_parallel=spec.data_parallel_threshold or None,
        row_slice=spec.row_slice_threshold or None,
    )


def group_tables(spec: Spec, thresholds: EffectiveThresholds) -> TableGroups:
    """Small tables (<= data-parallel threshold) first, then huge ones (>= row threshold)."""
    groups = TableGroups([], [], [])
    for index, table in enumerate(spec.tables):
        if thresholds.data_parallel and table.elements <= thresholds.data_parallel:
            groups.data_parallel.append(index)
        elif thresholds.row_slice and table.elements >= thresholds.row_slice:
            groups.row_sliced.append(index)
        else:
            groups.table_parallel.append(index)
    return groups


def table_of_input(tables: list[TableSpec], inputs: list[InputSpec]) -> list[int]:
    """The index of the table each input reads, in input order."""
    index = {t.name: i for i, t in enumerate(tables)}
    return [index[i.table] for i in inputs]


def group_inputs(groups: TableGroups, input_tables: list[int]) -> TableGroups:
    """Input indices by the group of the table they read, in input order."""
    group_of = {}
    for name, members in vars(groups).items():
        group_of.update(dict.fromkeys(members, name))
    result = TableGroups([], [], [])
    for input_index, table in enumerate(input_tables):
        getattr(result, group_of[table]).append(input_index)
    return result

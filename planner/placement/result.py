"""What every strategy returns: a ``Placement``, the only thing that crosses into a plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from planner.placement.grouping import EffectiveThresholds, TableGroups
from planner.placement.layout import RankLayout
from planner.spec import Spec
from planner.spec_fields import RowReduction


@dataclass(frozen=True)
class Placement:
    """Where everything goes, before it is written out as a plan.

    A placement function (upstream's pipeline, or another strategy) decides this; the
    plan's per-rank weights, shards, exchange and totals all follow from it.
    """

    strategy: str
    groups: TableGroups
    thresholds: EffectiveThresholds
    column_threshold: int | None
    threshold_source: str
    layouts: list[RankLayout]
    row_ranges: dict[int, list[tuple[int, int]]]
    input_groups: TableGroups  # input indices by the group of the table each reads
    # the strategy's choice where the spec leaves row_reduction open (None: the spec's)
    row_reduction: RowReduction | None = None


PlacementFunction = Callable[[Spec], Placement]

"""The strategies: each name a spec may give, and the placement function it runs.

Adding a strategy is a module with a ``PlacementFunction`` (spec in, ``Placement`` out)
and an entry here. Its name is also written in ``planner.spec.Strategy``, since specs and
plans record it and the plan's JSON Schema lists it; a test keeps the two lists equal.
"""

from __future__ import annotations

from planner.placement.auto import auto_placement
from planner.placement.offload import with_offload
from planner.placement.result import Placement, PlacementFunction
from planner.placement.upstream import UPSTREAM_STRATEGIES, upstream_placement
from planner.spec import Spec

PLACEMENTS: dict[str, PlacementFunction] = {
    **dict.fromkeys(UPSTREAM_STRATEGIES, upstream_placement),  # one pipeline, three rules
    "auto": auto_placement,
}
STRATEGY_NAMES: tuple[str, ...] = tuple(PLACEMENTS)


def place(spec: Spec) -> Placement:
    """The placement of the strategy ``spec`` names, with its offload rule applied.

    With one rank there is nothing to balance: whatever was asked, upstream's ``basic``
    places the tables (README, placement rule 1), and the plan names it. Offloading
    (``planner.placement.offload``) then moves pieces to host memory, whatever the strategy.
    """
    strategy = PLACEMENTS["basic" if spec.world_size == 1 else spec.strategy]
    return with_offload(spec, strategy(spec))

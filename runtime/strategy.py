"""``layer.strategy``: upstream's placement lists, read from the plan.

Upstream's layer publishes its ``DistEmbeddingStrategy`` as ``layer.strategy``, and
training scripts read it: with ``dp_input=False`` each rank feeds the inputs
``strategy.input_ids_list[rank]``, in that order. The same lists are derived here from
the plan (:func:`planner.reports.upstream.upstream_lists`, checked against upstream's
own lists for 600 specs), so such scripts keep working.
"""

from __future__ import annotations

from planner.plan import Plan
from planner.reports.upstream import upstream_lists


class PlanStrategy:
    """Upstream's ``DistEmbeddingStrategy`` attributes for a plan.

    Settings: ``strategy`` (the strategy name used), ``column_slice_threshold``,
    ``row_slice_threshold``, ``data_parallel_threshold``, ``gpu_embedding_size``.
    Lists: ``table_groups``, ``input_groups``, ``map_groups``, ``rev_group_ids``,
    ``row_inputs_offsets``, and per rank ``input_ids_list``, ``table_ids``,
    ``local_maps``, ``local_input_offsets``, ``local_weight_offsets``,
    ``local_group_list``, then ``widths_list_flat`` and ``rev_tp_ids``. Table-parallel
    positions count within the table-parallel group, as upstream's do. Upstream's Keras
    configs (``global_configs``, ``dp_configs``, ``local_configs``,
    ``row_sliced_configs``) and its ``sliced_out_ranges`` are not published.
    """

    def __init__(self, plan: Plan):
        parameters = plan.parameters
        self.strategy = plan.strategy
        self.column_slice_threshold = parameters.requested_column_slice_threshold
        self.row_slice_threshold = parameters.row_slice_threshold
        self.data_parallel_threshold = parameters.data_parallel_threshold
        self.gpu_embedding_size = parameters.gpu_embedding_size
        for name, value in upstream_lists(plan).items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"PlanStrategy({self.strategy!r}, table_ids={self.table_ids!r})"

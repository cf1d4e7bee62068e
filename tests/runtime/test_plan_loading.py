"""The runtime reads plans through planner.load_plan: a broken plan stops every rank alike.

Refused while the plan is read, before the layer touches Horovod, so no rank can enter
a collective the others never reach.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

from planner import PlanFileError, make_plan, spec_from_dict
from runtime import DistributedEmbedding

pytestmark = pytest.mark.runtime

# b (10 x 4) is column-sliced over the 2 ranks: columns 0:2 on rank 0, 2:4 on rank 1
SPEC = {
    "world_size": 2,
    "row_slice_threshold": 3000,
    "tables": [{"name": "a", "rows": 1000, "width": 4}, {"name": "b", "rows": 10, "width": 4}],
}


@pytest.fixture
def broken() -> dict:
    data = json.loads(make_plan(spec_from_dict(SPEC)).to_json())
    assert [(s["table"], s["rank"], s["cols"]) for s in data["shards"]] == [
        ("b", 0, [0, 2]),
        ("b", 1, [2, 4]),
    ]
    data["shards"][1]["cols"] = [1, 4]  # overlaps rank 0's columns of b
    return data


def test_a_broken_plan_file_is_refused(tmp_path, broken: dict) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(PlanFileError, match=r"plan\.json: shards: the shards of 'b' do not cover"):
        DistributedEmbedding.from_plan(path)


def test_a_broken_plan_dict_is_refused(broken: dict) -> None:
    with pytest.raises(PlanFileError, match=r"<plan>: shards: the shards of 'b' do not cover"):
        DistributedEmbedding.from_plan(broken)


@pytest.mark.parametrize("dp_input", [True, False])
def test_a_rank_builds_its_own_part_of_a_plan_file_and_no_other(
    tmp_path, monkeypatch, dp_input: bool
) -> None:
    """The layer's pipeline and input agreement take every rank's served inputs
    (``Plan.served``), and only their own rank in full."""
    from planner import load_plan, save_plan
    from planner.plan_ranks import WrittenRanks
    from runtime.agreement import InputAgreement
    from runtime.pipeline import Pipeline

    plan = make_plan(spec_from_dict({**SPEC, "world_size": 4, "dp_input": dp_input}))
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    built = []
    work_out = WrittenRanks._rank
    monkeypatch.setattr(WrittenRanks, "_rank", lambda self, i: built.append(i) or work_out(self, i))
    loaded = load_plan(path)
    agreement = InputAgreement(loaded, 2, 4)
    pipeline = Pipeline(loaded, 2, "layer", None, agreement, "float32")
    assert built == [2]
    expected = [
        [i.name for i in plan.inputs] if dp_input else [x.input for x in r.table_parallel_inputs]
        for r in plan.ranks
    ]
    assert agreement.expected == expected
    assert pipeline._served_widths == [
        [r.table_parallel_weights[x.weight].width for x in r.table_parallel_inputs]
        for r in plan.ranks
    ]


def test_ranks_given_different_plans_each_raise_the_same_line() -> None:
    """What every rank raises when the layer is made (the identities gathered from all
    of them): which ranks hold which plan, and the fix."""
    from runtime.checks import check_same_plan, plan_identity

    basic = make_plan(spec_from_dict(SPEC))
    other = make_plan(spec_from_dict({**SPEC, "strategy": "memory_optimized"}))
    check_same_plan([plan_identity(basic)] * 3)  # one plan: nothing to say
    with pytest.raises(ValueError) as raised:
        check_same_plan([plan_identity(p) for p in (basic, basic, other, basic)])
    assert str(raised.value) == (
        f"the ranks were given different plans (ranks 0-1, 3: {basic.digest[7:19]} (basic, "
        f"2 tables, 2 ranks); rank 2: {other.digest[7:19]} (memory_optimized, 2 tables, 2 "
        "ranks), by the sha256 of each plan); give every rank the same plan file (a copy on "
        "one host may be stale)"
    )

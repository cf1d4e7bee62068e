"""A plan read from its file works each rank out when first asked for (``WrittenRanks``).

A worker takes its own rank in full and of the others only what they serve; every rank
worked out this way must be the rank the planner made, and a file that is not sealed
must still be checked whole as it is read.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import yaml

from planner import PlanFileError, consistency, load_plan, make_plan, save_plan, spec_from_dict
from planner.parsing import gc_paused
from planner.plan import Plan, read_plan, read_plan_file
from planner.plan_parts import served_by
from planner.plan_ranks import RankEntry, WrittenRanks
from planner.seal import seal_holds, sealed

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# Bundled specs on 16 ranks, with row-sliced tables (auto; a row-slice threshold),
# data-parallel ones, fused weights, and offloaded pieces under both offload rules.
CASES = {
    "tiny memory_balanced": ("synthetic_tiny", {"strategy": "memory_balanced"}),
    "tiny auto": ("synthetic_tiny", {"strategy": "auto"}),
    "kaggle rows and replicas": (
        "criteo_kaggle",
        {"strategy": "memory_optimized", "row_slice_threshold": 10**6},
    ),
    "tiny offload upstream": (
        "synthetic_tiny",
        {"strategy": "basic", "gpu_embedding_size": 3 * 10**6},
    ),
    "kaggle offload auto": (
        "criteo_kaggle",
        {"strategy": "basic", "device_memory": 60 * 2**20, "offload": "auto"},
    ),
}


def planned(case: str) -> Plan:
    name, settings = CASES[case]
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    return make_plan(spec_from_dict({**raw, "world_size": 16, **settings}))


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory) -> tuple[Plan, Path, Path]:
    """The plan, its sealed file and the same plan written without its seal."""
    plan = planned(request.param)
    folder = tmp_path_factory.mktemp("lazy")
    path, unsealed = folder / "plan.json", folder / "unsealed.json"
    save_plan(plan, path)
    unsealed.write_text(plan.to_json())
    assert read_plan_file(path)[1] and not read_plan_file(unsealed)[1]
    return plan, path, unsealed


def test_the_cases_cover_row_slices_replicas_fusion_and_offload() -> None:
    plans = [planned(case) for case in CASES]
    assert any(p.groups.row_sliced for p in plans)
    assert any(p.groups.data_parallel for p in plans)
    assert any(len(w.members) > 1 for p in plans for r in p.ranks for w in r.table_parallel_weights)
    assert {p.parameters.offload for p in plans} >= {"upstream", "auto"}
    assert all(
        any(w.device == "host" for r in p.ranks for w in r.table_parallel_weights)
        for p in plans
        if p.parameters.offload != "none"
    )


@pytest.mark.parametrize("which", ["sealed", "unsealed"])
def test_every_rank_worked_out_alone_is_the_rank_the_planner_made(case, which) -> None:
    plan, path, unsealed = case
    for rank in range(plan.world_size):  # a fresh load per rank: each is worked out alone
        loaded = load_plan(path if which == "sealed" else unsealed)
        assert isinstance(loaded.ranks, WrittenRanks)
        mine = loaded.ranks[rank]
        assert mine == plan.ranks[rank]
        assert mine.row_slices == plan.ranks[rank].row_slices
        assert loaded.served(rank) == served_by(plan.ranks[rank])
    loaded = load_plan(path)
    assert loaded.exchange == plan.exchange
    assert [r.row_slices for r in loaded.ranks] == [r.row_slices for r in plan.ranks]
    assert loaded == plan and plan == loaded
    assert loaded.to_json() == plan.to_json()


def test_a_worker_builds_its_own_rank_and_checks_no_other(case, monkeypatch) -> None:
    plan, path, _ = case
    built, checked = [], []
    work_out, check = WrittenRanks._rank, RankEntry.model_validate

    def counted_rank(self, index):
        built.append(index)
        return work_out(self, index)

    def counted_check(raw, **kwargs):
        checked.append(raw["rank"])
        return check(raw, **kwargs)

    monkeypatch.setattr(WrittenRanks, "_rank", counted_rank)
    monkeypatch.setattr(RankEntry, "model_validate", counted_check)
    loaded = load_plan(path)
    last = plan.world_size - 1
    loaded.ranks[last].row_slices  # noqa: B018  # what a worker asks for
    loaded.ranks[-1]  # the same rank, built once
    assert (built, checked) == ([last], [last])
    loaded.exchange  # noqa: B018  # every rank's served inputs: entries, no weights
    assert built == [last]
    assert sorted(checked) == list(range(plan.world_size))
    checked.clear()
    load_plan(path, every_rank=True)  # show and diff: every entry checked as it loads
    assert checked == list(range(plan.world_size))


def test_an_unsealed_file_gets_every_check(case, monkeypatch) -> None:
    plan, _, unsealed = case
    calls = []
    check = consistency.plan_problems
    monkeypatch.setattr(consistency, "plan_problems", lambda p: calls.append(p) or check(p))
    assert load_plan(unsealed).ranks[0] == plan.ranks[0]
    assert len(calls) == 1


def test_a_hand_edited_rank_is_refused_whichever_rank_the_worker_takes(tmp_path) -> None:
    plan = planned("tiny memory_balanced")
    data = json.loads(plan.to_json())
    data["ranks"][-1]["table_parallel_weights"][0]["width"] = "wide"
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFileError, match=r"ranks\[15\]\.table_parallel_weights\[0\]\.width"):
        load_plan(path)
    data = json.loads(plan.to_json())
    data["ranks"][-1]["bytes"] += 1  # well-formed, but not what the rank holds
    path = tmp_path / "bytes.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFileError, match=r"ranks\[15\]: elements or bytes do not match"):
        load_plan(path)
    assert read_plan(path).ranks[0] == plan.ranks[0]  # validate reads it, to list problems


def resealed(plan: Plan, path: Path, change) -> Path:
    """``plan`` edited by ``change``, then sealed again: its seal holds."""
    data = json.loads(plan.to_json())
    change(data)
    path.write_text(sealed(json.dumps(data, indent=2) + "\n"))
    assert seal_holds(path.read_text())
    return path


def test_a_sealed_entry_is_schema_checked_when_asked_for(tmp_path) -> None:
    """A seal that holds over a malformed rank (a file edited and sealed again): a worker
    taking another rank loads and runs; the one taking it, or any command reading every
    rank, gets PlanFileError naming it, worded as when the whole file is checked."""
    plan = planned("tiny memory_balanced")

    def narrow(data: dict) -> None:
        data["ranks"][5]["table_parallel_weights"][0]["width"] = 0

    path = resealed(plan, tmp_path / "plan.json", narrow)
    said = r"plan\.json: ranks\[5\]\.table_parallel_weights\[0\]\.width: .*greater than"
    loaded = load_plan(path)
    assert loaded.ranks[0] == plan.ranks[0]
    assert loaded.served(0) == served_by(plan.ranks[0])
    with pytest.raises(PlanFileError, match=said):
        loaded.ranks[5]
    with pytest.raises(PlanFileError, match=said):
        loaded.served(5)
    with pytest.raises(PlanFileError, match=said):
        load_plan(path, every_rank=True)
    with pytest.raises(PlanFileError, match=said):  # validate trusts no seal
        read_plan(path)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda d: d["ranks"].__setitem__(5, "oops"), r"ranks\[5\]: expected a JSON object"),
        (lambda d: d["ranks"][5].pop("rank"), r"ranks\[5\]\.rank: required field is missing"),
        (lambda d: d["ranks"][5].__setitem__("rank", 6), r"ranks: expected ranks 0\.\.15"),
        (lambda d: d["shards"][0].__setitem__("rank", 16), r"names rank 16, outside 0\.\.15"),
    ],
)
def test_a_sealed_file_whose_ranks_are_misnumbered_is_refused_on_load(tmp_path, change, said):
    """What every load checks, however the file is sealed: each entry a rank numbered in
    order (read without checking the entry), and every shard on a rank that exists."""
    path = resealed(planned("tiny memory_balanced"), tmp_path / "plan.json", change)
    with pytest.raises(PlanFileError, match=said):
        load_plan(path)


def test_written_ranks_read_as_a_list(case) -> None:
    plan, path, _ = case
    ranks = load_plan(path).ranks
    assert len(ranks) == plan.world_size
    assert ranks[-2] is ranks[plan.world_size - 2]
    assert ranks[1:4] == plan.ranks[1:4]
    assert list(reversed(ranks)) == list(reversed(plan.ranks))
    assert ranks != plan.ranks[:-1]
    with pytest.raises(IndexError):
        ranks[plan.world_size]


def test_loading_leaves_the_collector_as_it_found_it(case) -> None:
    _, path, _ = case
    assert gc.isenabled()
    load_plan(path)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        load_plan(path)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_the_application_froze_stays_frozen() -> None:
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            made = [[] for _ in range(1000)]
        assert gc.get_freeze_count() == frozen  # not thawed, and the new lists not frozen
        assert gc.is_tracked(made[0])
    finally:
        gc.unfreeze()

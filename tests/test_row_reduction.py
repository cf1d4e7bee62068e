"""``row_reduction: host``: row-sliced partial sums added up within each host first.

Worked by hand on 4 ranks as two hosts of 2 (global batch 8, so b = 2 samples per
rank), one table ``r`` of 1000 x 4 row-sliced over all ranks and read by one one-hot
input: a rank's samples' partial sums are 2 x 4 float32 = 32 B (a *block*).

- direct: each holder sends its block for every other rank: 3 x 32 = 96 B out, and
  receives one from each of the 3 others, 96 B in.
- host: each holder sends the rank beside it on its host the blocks of the ranks that
  rank sums for (its position on both hosts: 2 blocks, 64 B) and gets as much from it;
  then each rank sends its host's sum to the rank at its position on the other host
  (32 B) and gets that host's sum from it (32 B).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from planner.cli import main
from planner.costs.comm import host_sum_flows
from planner.errors import SpecError
from planner.plan import parse_plan, plan_json_schema
from planner.planning import make_plan
from planner.reports.diff import diff_plans, summary
from planner.reports.preview import summary_lines
from planner.spec import load_spec, spec_from_dict
from planner.validation import plan_problems, spec_problems

SPEC = {
    "world_size": 4,
    "strategy": "basic",
    "row_slice_threshold": 4000,
    "global_batch_size": 8,
    "gpus_per_host": 2,
    "alltoall_bandwidth": 1e-6,  # 1000 B/s
    "intra_host_bandwidth": 2e-6,  # 2000 B/s
    "tables": [{"name": "r", "rows": 1000, "width": 4, "combiner": "sum"}],
    "inputs": [{"name": "r", "table": "r"}],
}


def plan_of(**changes):
    return make_plan(spec_from_dict({**SPEC, **changes}))


def traffic(plan, phase: str) -> list[tuple[int, int]]:
    return [(getattr(r.comm, phase).sent, getattr(r.comm, phase).received) for r in plan.ranks]


def test_direct_sends_every_holders_partial_sums_to_every_rank() -> None:
    plan = plan_of()
    assert plan.groups.row_sliced == ["r"]
    assert traffic(plan, "row_reduce_scatter") == [(96, 96)] * 4
    assert traffic(plan, "row_host_sums") == [(0, 0)] * 4
    assert "row_host_sums" not in plan.stats.comm.phase_seconds
    # outputs stage: 32 B to the host's other rank at 2000 B/s, 64 B off it at 1000 B/s
    assert plan.stats.step.stage_seconds["outputs"] == pytest.approx(0.064)
    assert "host_sums" not in plan.stats.step.stage_seconds


def test_host_sums_within_the_host_then_send_one_sum_across() -> None:
    plan = plan_of(row_reduction="host")
    assert traffic(plan, "row_reduce_scatter") == [(32, 32)] * 4
    assert traffic(plan, "row_grad_allgather") == [(32, 32)] * 4
    assert traffic(plan, "row_host_sums") == [(64, 64)] * 4
    assert traffic(plan, "row_host_sum_grads") == [(64, 64)] * 4
    assert plan.stats.comm.phase_seconds["row_host_sums"] == pytest.approx(64 / 2000)
    stages = plan.stats.step.stage_seconds
    assert stages["host_sums"] == stages["host_sum_gradients"] == pytest.approx(64 / 2000)
    assert stages["outputs"] == stages["output_gradients"] == pytest.approx(32 / 1000)
    assert list(stages) == [
        "ids", "forward_lookups", "host_sums", "outputs", "output_gradients",
        "host_sum_gradients", "backward_lookups", "dp_allreduce",
    ]
    # the ids travel as before
    assert traffic(plan, "row_id_allgather") == traffic(plan_of(), "row_id_allgather")
    assert plan_problems(plan) == []


def test_a_host_split_sums_on_its_host_and_sends_each_other_rank_one_sum() -> None:
    # rows on host 0 only (ranks 0 and 1), blocks of 32 B
    sent_in, received_in, sent_out, received_out = host_sum_flows(
        np.array([1, 1, 0, 0]), hosts=2, block=32
    )
    assert sent_in.tolist() == [64, 64, 0, 0]
    assert received_in.tolist() == [64, 64, 0, 0]
    assert sent_out.tolist() == [32, 32, 0, 0]  # to ranks 2 and 3, one each
    assert received_out.tolist() == [0, 0, 32, 32]


@pytest.mark.parametrize("gpus_per_host", [8, 1], ids=["one host", "one rank per host"])
def test_nothing_to_add_up_is_the_direct_exchange(gpus_per_host) -> None:
    hosts = {"gpus_per_host": gpus_per_host}
    direct, host = plan_of(**hosts), plan_of(row_reduction="host", **hosts)
    assert [r.comm for r in host.ranks] == [r.comm for r in direct.ranks]
    assert host.stats.step == direct.stats.step


def test_the_default_leaves_plans_as_they_were() -> None:
    direct = plan_of()
    assert "row_reduction" not in direct.to_json()
    assert '"row_reduction": "host"' in plan_of(row_reduction="host").to_json()
    assert direct.fingerprint == make_plan(spec_from_dict(SPEC)).fingerprint
    assert plan_of(row_reduction="host").fingerprint != direct.fingerprint


def test_hosts_that_do_not_fill_evenly_are_refused() -> None:
    with pytest.raises(SpecError, match=r"row_reduction: host .* 12 ranks do not fill evenly"):
        spec_from_dict({**SPEC, "world_size": 12, "gpus_per_host": 8, "global_batch_size": 12,
                        "row_reduction": "host"})


def test_the_option_reaches_the_plan(tmp_path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "world_size: 4\nrow_slice_threshold: 4000\nglobal_batch_size: 8\ngpus_per_host: 2\n"
        "tables: [{name: r, rows: 1000, width: 4, combiner: sum}]\n"
        "inputs: [{name: r, table: r}]\n"
    )
    out = tmp_path / "p.plan.json"
    runner = CliRunner()
    done = runner.invoke(main, ["plan", str(spec), "--row-reduction", "host", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert '"row_reduction": "host"' in out.read_text()
    checked = runner.invoke(main, ["validate", str(out), "--spec", str(spec),
                                   "--row-reduction", "host"])
    assert checked.exit_code == 0, checked.output


@given(
    st.integers(1, 6).flatmap(
        lambda hosts: st.tuples(
            st.just(hosts),
            st.integers(1, 5).flatmap(
                lambda g: st.lists(st.integers(0, 1), min_size=hosts * g, max_size=hosts * g)
            ),
            st.integers(1, 1000),
        )
    )
)
def test_host_sums_move_every_byte_they_send_and_cross_hosts_less(case) -> None:
    hosts, holder, block = case
    holder = np.array(holder)
    world = len(holder)
    g = world // hosts
    sent_in, received_in, sent_out, received_out = host_sum_flows(holder, hosts, block)
    assert sent_in.sum() == received_in.sum()
    assert sent_out.sum() == received_out.sum()
    # direct: each holder sends its block to every rank on another host
    direct_across = int(holder.sum()) * (world - g) * block
    assert sent_out.sum() <= direct_across
    # a rank receives across hosts one block per other host with rows, no more
    with_rows = holder.reshape(hosts, g).any(axis=1)
    assert (received_out <= block * (with_rows.sum())).all()


def test_auto_with_host_sums_pays_less_for_its_host_splits() -> None:
    # synthetic_tiny on 4 hosts of 8: auto splits its three multi-hot tables' rows over
    # a host either way; with host sums their outputs leave each host once, not 8 times
    options = {"world_size": 32, "strategy": "auto", "device_memory": 80 * 2**30,
               "global_batch_size": 512 * 32}
    config = Path(__file__).parent.parent / "configs" / "synthetic_tiny.yaml"
    direct = make_plan(load_spec(config, {**options, "row_reduction": "direct"}))
    host = make_plan(load_spec(config, {**options, "row_reduction": "host"}))
    split_direct, split_host = (  # tables whose rows lie on one host's 8 ranks
        {s.table for s in plan.row_splits if s.ranks[1] - s.ranks[0] == 8}
        for plan in (direct, host)
    )
    assert split_direct == split_host == {"g0_t0", "g1_t0", "g2_t0"}
    stages = host.stats.step.stage_seconds
    assert stages["outputs"] < 0.7 * direct.stats.step.stage_seconds["outputs"]
    assert 0 < stages["host_sums"] < stages["outputs"]
    assert host.stats.step.step_seconds < 0.9 * direct.stats.step.step_seconds
    assert plan_problems(host) == []


def test_a_plan_edited_to_uneven_hosts_gets_problems_not_a_crash() -> None:
    raw = json.loads(plan_of(row_reduction="host").to_json())
    raw["parameters"]["gpus_per_host"] = 3  # 4 ranks do not fill hosts of 3
    problems = plan_problems(parse_plan(raw))
    assert any("row_reduction: host" in p and "do not fill evenly" in p for p in problems)


# --- auto chooses where the spec leaves row_reduction open --------------------------------

TINY_32 = {"world_size": 32, "strategy": "auto", "device_memory": 80 * 2**30,
           "global_batch_size": 512 * 32}
CONFIGS = Path(__file__).parent.parent / "configs"


def _tiny_32(**changes):
    return make_plan(load_spec(CONFIGS / "synthetic_tiny.yaml", {**TINY_32, **changes}))


def test_auto_takes_host_sums_where_its_estimate_is_faster() -> None:
    # synthetic_tiny on 4 hosts of 8 (measured): direct 0.2209 ms, host 0.1702 ms
    left_open, direct, host = _tiny_32(), _tiny_32(row_reduction="direct"), _tiny_32(
        row_reduction="host"
    )
    assert host.stats.step.step_seconds < 0.8 * direct.stats.step.step_seconds
    assert left_open.parameters.row_reduction == "host"
    assert left_open.parameters.requested_row_reduction is None
    assert left_open.stats.step.step_seconds == host.stats.step.step_seconds
    assert left_open.stats.step.stage_seconds["host_sums"] > 0  # estimated as it runs
    assert plan_problems(left_open) == []
    assert "chosen by auto" in "\n".join(summary_lines(left_open))
    assert "chosen by auto" not in "\n".join(summary_lines(host))


def test_a_chosen_reduction_is_written_apart_from_what_the_spec_asked() -> None:
    left_open = _tiny_32()
    text = left_open.to_json()
    assert '"row_reduction": "host",\n    "requested_row_reduction": null' in text
    assert jsonschema.Draft202012Validator(plan_json_schema()).is_valid(json.loads(text))
    again = parse_plan(json.loads(text))
    assert again == left_open
    assert plan_problems(again) == []
    assert again.spec().row_reduction is None  # the spec as written: open
    assert again.fingerprint == load_spec(CONFIGS / "synthetic_tiny.yaml", TINY_32).fingerprint()
    # written only where the plan alone cannot tell: host as asked, direct as asked
    assert "requested_row_reduction" not in _tiny_32(row_reduction="host").to_json()
    asked_direct = _tiny_32(row_reduction="direct")
    assert '"requested_row_reduction": "direct"' in asked_direct.to_json()
    assert asked_direct.fingerprint != left_open.fingerprint


def test_the_spec_left_open_validates_against_the_plan_auto_chose(tmp_path) -> None:
    spec = load_spec(CONFIGS / "synthetic_tiny.yaml", TINY_32)
    assert spec_problems(_tiny_32(), spec) == []
    mismatch = spec_problems(_tiny_32(row_reduction="direct"), spec)
    said = "row_reduction: 'direct' in the plan, unset (or auto) in the spec"
    assert mismatch and said in mismatch[0]
    asked = load_spec(CONFIGS / "synthetic_tiny.yaml", {**TINY_32, "row_reduction": "host"})
    (line,) = spec_problems(_tiny_32(), asked)
    assert "row_reduction: left to the planner in the plan (auto chose host), 'host' in the " \
        "spec; leave row_reduction unset to match" in line
    balanced = {"strategy": "memory_balanced"}
    direct = load_spec(
        CONFIGS / "synthetic_tiny.yaml", {**TINY_32, **balanced, "row_reduction": "direct"}
    )
    (line,) = spec_problems(_tiny_32(**balanced), direct)
    assert "row_reduction: left to the planner in the plan (so direct), 'direct' in the " \
        "spec; leave row_reduction unset to match" in line


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({}, "no row-sliced table pays: the exchanges are the same, so direct"),
        ({"gpus_per_host": 32}, "one host: nothing to add up"),
        ({"gpus_per_host": 12}, "32 ranks do not fill hosts of 12"),
    ],
)
def test_auto_leaves_direct_where_host_sums_cannot_pay(overrides, why) -> None:
    config = "criteo_kaggle.yaml" if not overrides else "synthetic_tiny.yaml"
    plan = make_plan(load_spec(CONFIGS / config, {**TINY_32, **overrides}))
    assert plan.parameters.row_reduction == "direct", why
    assert "requested_row_reduction" not in plan.to_json(), why


def test_the_memory_objective_weighs_both_reductions_of_its_balanced_plans() -> None:
    # synthetic_tiny on 4 hosts of 8, memory objective (measured): the balanced plans
    # row-slice over all ranks; with host sums their step is 7.891 -> 3.864 ms, same bytes
    left_open, direct = (
        _tiny_32(objective="memory", global_batch_size=65536, **reduction)
        for reduction in ({}, {"row_reduction": "direct"})
    )
    assert left_open.parameters.row_reduction == "host"
    assert left_open.stats.step.step_seconds < 0.6 * direct.stats.step.step_seconds
    assert left_open.stats.max_rank_bytes == direct.stats.max_rank_bytes
    assert left_open.stats.imbalance <= 1.02


def test_a_plan_file_without_the_request_reads_it_from_the_reduction() -> None:
    # every plan written before auto could choose: host was asked for, direct was not set
    raw = json.loads(plan_of(row_reduction="host").to_json())
    assert "requested_row_reduction" not in raw["parameters"]
    assert parse_plan(raw).parameters.requested_row_reduction == "host"
    raw = json.loads(plan_of().to_json())
    assert parse_plan(raw).parameters.requested_row_reduction is None
    assert parse_plan(raw).spec().row_reduction is None


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"row_reduction": "direct", "requested_row_reduction": "host"},
         "parameters.row_reduction: direct, where the spec asked for host"),
        ({"requested_row_reduction": None, "gpus_per_host": 3},
         "parameters.row_reduction: host sums within hosts of gpus_per_host (3) ranks, "
         "which 4 ranks do not fill evenly"),
        ({"requested_row_reduction": None},  # a basic plan: auto cannot have chosen it
         "parameters.row_reduction: host, left to the planner (requested_row_reduction "
         "null), but only strategy auto chooses it, and this plan asked for basic"),
    ],
)
def test_an_edited_reduction_is_a_problem(edit, problem) -> None:
    raw = json.loads(plan_of(row_reduction="host").to_json())
    raw["parameters"].update(edit)
    problems = plan_problems(parse_plan(raw))
    assert any(problem in p for p in problems), problems


def test_diff_leads_with_a_changed_reduction() -> None:
    direct, host = plan_of(), plan_of(row_reduction="host")
    change = diff_plans(direct, host)
    assert summary(change, direct, host).startswith("row reduction direct -> host")
    assert [c.what for c in change.settings] == ["parameters.row_reduction"]


def test_compare_and_the_json_preview_say_which_reduction_runs(tmp_path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "world_size: 4\nrow_slice_threshold: 4000\nglobal_batch_size: 8\ngpus_per_host: 2\n"
        "tables: [{name: r, rows: 1000, width: 4, combiner: sum}]\n"
    )
    runner = CliRunner()
    done = runner.invoke(main, ["compare", str(spec), "--strategy", "basic",
                                "--row-reduction", "host", "--format", "json"])
    assert done.exit_code == 0, done.output
    assert [row["row_reduction"] for row in json.loads(done.stdout)] == ["host"]
    table = runner.invoke(main, ["compare", str(spec), "--strategy", "basic",
                                 "--row-reduction", "host"]).stdout
    assert "basic (host sums)" in table
    shown = runner.invoke(main, ["plan", str(spec), "-o", str(tmp_path / "p.json"),
                                 "--format", "json"]).stdout
    assert json.loads(shown)["row_reduction"] == "direct"



def test_auto_as_a_value_leaves_the_choice_to_the_planner(tmp_path) -> None:
    # written in the spec, or as the option over a spec that wrote host
    assert spec_from_dict({**SPEC, "row_reduction": "auto"}).row_reduction is None
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "world_size: 4\nstrategy: basic\nrow_slice_threshold: 4000\nglobal_batch_size: 8\n"
        "gpus_per_host: 2\nrow_reduction: host\n"
        "tables: [{name: r, rows: 1000, width: 4, combiner: sum}]\n"
    )
    out = tmp_path / "p.json"
    done = CliRunner().invoke(main, ["plan", str(spec), "--row-reduction", "auto", "-o", str(out)])
    assert done.exit_code == 0, done.output
    plan = parse_plan(json.loads(out.read_text()))
    assert plan.parameters.requested_row_reduction is None
    assert plan.parameters.row_reduction == "direct"  # basic: only auto chooses host
    unset = tmp_path / "unset.yaml"
    unset.write_text(spec.read_text().replace("row_reduction: host\n", ""))
    assert plan.fingerprint == load_spec(unset).fingerprint()


@pytest.mark.parametrize("value", ["automatic", "Host", 5, True, ["host"]])
def test_a_wrong_value_names_every_accepted_one(value) -> None:
    with pytest.raises(SpecError) as caught:
        spec_from_dict({**SPEC, "row_reduction": value})
    assert str(caught.value).endswith(
        f"row_reduction: Input should be 'direct', 'host' or 'auto' (got {value!r})"
    ), caught.value

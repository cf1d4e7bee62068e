"""CPU offload through the CLI and the reports: preview, refusals, validate, diff, compare,
schema. Numbers are worked out by hand from the small spec (tests/test_offload.py's
docstring): with ``gpu_embedding_size: 500`` a (3200 B, rank 0) and b (1600 B, rank 1)
go to host memory; with ``offload: auto`` and 3000 B only a does.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from click.testing import Result
from shared import ROWS_AND_REPLICAS, SMALL, invoke

from planner import make_plan, plan_problems, spec_from_dict
from planner.plan import parse_plan
from planner.reports.capacity import capacity_report
from planner.reports.html_report import plan_page


def plan_json(**changes) -> dict:
    return json.loads(make_plan(spec_from_dict({**SMALL, **changes})).to_json())


# --- preview -----------------------------------------------------------------------------


def test_the_preview_shows_gpu_and_host_bytes_per_rank(work: Path) -> None:
    result = invoke("plan", "small.yaml", "--gpu-embedding-size", "500", "-o", "p.json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[3] == (
        "CPU offload (upstream's rule, at most 500 elements of pieces per GPU): 2 "
        "table-parallel pieces, 4.69 KiB with their optimizer state, in host memory; "
        "largest rank on its GPU 640 B"
    )
    head = lines.index(next(line for line in lines if line.startswith("rank ")))
    assert lines[head].split()[-4:] == ["on", "GPU", "in", "host"]
    assert lines[head + 2].endswith("80 B  3.12 KiB")
    assert lines[head + 3].endswith("640 B  1.56 KiB")
    shards = [line.split() for line in lines if line.split()[:1] in (["a"], ["b"], ["c"])]
    assert [row[-1] for row in shards] == ["host", "host", "gpu"]


def test_without_offload_the_preview_is_as_before(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", "p.json")
    assert "on GPU" not in result.stdout
    assert "CPU offload" not in result.stdout
    assert "device" not in result.stdout


def test_auto_preview_names_the_limit_and_the_host_memory(work: Path) -> None:
    result = invoke(
        "plan", "small.yaml", "--device-memory", "3000", "--offload", "auto",
        "--host-memory", "4KiB", "-o", "p.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "device memory 2.93 KiB less 0% reserve = 2.93 KiB per rank: fits, largest rank at " \
        "74.7%" in result.stdout  # rank 1: 2240 of 3000 B on its GPU
    assert "CPU offload (auto, the fewest bytes that make each rank fit its GPU): 1 " \
        "table-parallel piece, 3.12 KiB" in result.stdout
    assert "host memory 4.00 KiB per rank: fits, largest rank at 78.1%" in result.stdout


def test_json_preview_carries_gpu_and_host_bytes(work: Path) -> None:
    result = invoke(
        "plan", "small.yaml", "--gpu-embedding-size", "500", "--format", "json", "-o", "p.json"
    )
    data = json.loads(result.stdout)
    assert [(r["device_bytes"], r["host_bytes"]) for r in data["ranks"]] == [
        (80, 3200),
        (640, 1600),
    ]
    assert data["offload"] == {
        "rule": "upstream",
        "gpu_embedding_size": 500,
        "host_memory": None,
        "pieces_in_host_memory": 2,
        "ranks_over_host_memory": [],
    }


# --- refusals ----------------------------------------------------------------------------


def refused(result: Result, work: Path) -> list[str]:
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert sorted(p.name for p in work.iterdir()) == ["small.yaml"]
    return result.stderr.splitlines()


def test_host_memory_over_is_refused_like_device_memory(work: Path) -> None:
    # rank 0 offloads a: 3200 B in host memory, 200 B over 3000 B; rank 1 holds none
    result = invoke(
        "plan", "small.yaml", "--device-memory", "3000", "--offload", "auto",
        "--host-memory", "3000", "-o", "p.json",
    )  # fmt: skip
    assert refused(result, work) == [
        "rank 0 needs 3.12 KiB, 200 B over the 2.93 KiB host_memory limit (a bare number is "
        "bytes: did you mean 3000MiB?); offloaded pieces and their optimizer state take "
        "that in host memory; raise --host-memory, raise --world-size, or give the GPUs "
        "more memory (--device-memory)"
    ]


def test_a_gpu_embedding_size_too_large_for_the_device_names_one_that_fits(work: Path) -> None:
    # 1000 elements keeps everything (rank 0: 840), 3280 B over 3000 B. Kept pieces cost at
    # most 4 B an element, so 3000 / 4 = 750 elements fit: rank 0 then keeps c alone.
    result = invoke(
        "plan", "small.yaml", "--device-memory", "3000", "--gpu-embedding-size", "1000",
        "-o", "p.json",
    )  # fmt: skip
    (line,) = refused(result, work)
    assert line.startswith(
        "rank 0 needs 3.20 KiB, 280 B over the 2.93 KiB GPU limit (2.93 KiB less 0% "
        "reserve; a bare number is bytes: did you mean 3000MiB?); gpu_embedding_size 1,000 "
        "keeps 3.20 KiB of table-parallel pieces on it; it fits with any one of: "
        "--gpu-embedding-size 750;"
    )
    fixed = make_plan(
        spec_from_dict({**SMALL, "device_memory": 3000, "gpu_embedding_size": 750})
    )
    assert capacity_report(fixed).lines() == []


def test_when_even_offloading_everything_does_not_fit_the_advice_says_so() -> None:
    # 400 B: every rank holds 440 B that cannot move (a 40 B replica and 400 B of row
    # slices); 3 ranks split the row-sliced table to 34 rows (272 B) at most: 312 B fits
    plan = make_plan(spec_from_dict(ROWS_AND_REPLICAS | {"device_memory": 400, "offload": "auto"}))
    assert [r.host_bytes for r in plan.ranks] == [400, 200]  # everything that can move did
    lines = capacity_report(plan).lines()
    assert lines == [
        "ranks 0-1 need 440 B each, 40 B over the 400 B GPU limit (400 B less 0% reserve; "
        "a bare number is bytes: did you mean 400GiB?); "
        "even with every table-parallel piece in host memory and the row slices perfectly "
        "balanced, each rank needs 440 B; it fits with --world-size 3"
    ]


def test_advice_names_no_change_that_overflows_host_memory_instead() -> None:
    # t: 1,000 x 64 float32 = 256,000 B, row-sliced over 2 ranks of 100,000 B: 128,000 B
    # each, which row slices cannot offload. --strategy auto would cut it into column
    # pieces and offload them: 128,000 B of host memory a rank, over host_memory, so it
    # is not named. 3 ranks hold 85,334 B of rows at most, which fits.
    spec = {
        "world_size": 2, "strategy": "basic", "row_slice_threshold": 1,
        "device_memory": 100_000, "offload": "auto", "host_memory": 100_000,
        "tables": [{"name": "t", "rows": 1000, "width": 64}],
    }
    auto = make_plan(spec_from_dict({**spec, "strategy": "auto"}))
    assert [r.host_bytes for r in auto.ranks] == [128_000, 128_000]
    assert capacity_report(make_plan(spec_from_dict(spec))).fixes == ["--world-size 3"]
    assert capacity_report(make_plan(spec_from_dict({**spec, "world_size": 3}))).fits


def test_offload_auto_needs_device_memory(work: Path) -> None:
    # offload given as an option is named as the option; written in the spec, the spec
    result = invoke("plan", "small.yaml", "--offload", "auto", "-o", "p.json")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --offload: auto moves to host memory what does not fit "
        "device_memory; set device_memory\n"
    )
    (work / "auto.yaml").write_text((work / "small.yaml").read_text() + "offload: auto\n")
    result = invoke("plan", "auto.yaml", "-o", "p.json")
    assert result.stderr == (
        "Error: auto.yaml: offload: auto moves to host memory what does not fit "
        "device_memory; set device_memory\n"
    )


def test_bad_offload_options_are_one_line(work: Path) -> None:
    result = invoke("plan", "small.yaml", "--gpu-embedding-size", "-3", "-o", "p.json")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --gpu-embedding-size: Input should be greater")
    result = invoke("plan", "small.yaml", "--host-memory", "lots", "-o", "p.json")
    assert result.stderr.startswith("Error: --host-memory: cannot read this as a size")
    result = invoke("plan", "small.yaml", "--offload", "cpu", "-o", "p.json")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1


# --- validate ----------------------------------------------------------------------------


def problems_after(data: dict) -> list[str]:
    return plan_problems(parse_plan(data))


def test_validate_accepts_offloaded_plans_and_their_spec(work: Path) -> None:
    planned = invoke("plan", "small.yaml", "--gpu-embedding-size", "500", "-o", "p.json")
    assert planned.exit_code == 0
    result = invoke("validate", "p.json", "--spec", "small.yaml", "--gpu-embedding-size", "500")
    assert result.exit_code == 0, result.output
    result = invoke("validate", "p.json", "--spec", "small.yaml", "--gpu-embedding-size", "560")
    assert result.exit_code == 1
    assert "fingerprint" in result.stderr


def test_a_shard_and_its_weight_must_agree_on_the_device() -> None:
    data = plan_json(gpu_embedding_size=500)
    del data["shards"][0]["device"]  # a, rank 0, back on the GPU in the shard list only
    assert problems_after(data) == ["ranks[0]: weight 0 is on host but the shard of 'a' says gpu"]


def test_only_table_parallel_pieces_can_be_offloaded() -> None:
    # Plan format 2: a row-sliced table is written as one row split, which has no device
    # to set; its shards exist only in a loaded plan, on the GPU.
    plan = make_plan(spec_from_dict(ROWS_AND_REPLICAS | {"gpu_embedding_size": 0}))
    data = json.loads(plan.to_json())
    assert "r" not in {s["table"] for s in data["shards"]}
    assert [s["table"] for s in data["row_splits"]] == ["r"]
    assert {s.device for s in plan.shards if s.table == "r"} == {"gpu"}


def test_an_offloaded_weight_fuses_nothing() -> None:
    data = plan_json(gpu_embedding_size=560)  # rank 1: b and d fused on the GPU
    data["ranks"][1]["table_parallel_weights"][0]["device"] = "host"
    for shard in data["shards"]:
        if shard["table"] in ("b", "d"):
            shard["device"] = "host"
    data["ranks"][1]["host_bytes"] = 2240
    assert "ranks[1]: weight 0 is in host memory but fuses 2 pieces; an offloaded piece is a " \
        "weight of its own" in problems_after(data)


def move(data: dict, rank: int, weight: int, device: str) -> None:
    """Edit one single-piece weight, its shard and the rank's host bytes consistently."""
    entry = data["ranks"][rank]["table_parallel_weights"][weight]
    (table,) = entry["tables"]
    spec = next(t for t in data["tables"] if t["name"] == table)
    size = spec["rows"] * entry["width"] * {"float32": 4, "float16": 2}[spec["dtype"]]
    before = entry.get("device", "gpu")
    entry["device"] = device
    shard = next(s for s in data["shards"] if (s["table"], s["rank"]) == (table, rank))
    shard["device"] = device
    change = size if device == "host" else -size if before == "host" else 0
    data["ranks"][rank]["host_bytes"] = data["ranks"][rank].get("host_bytes", 0) + change


def test_upstream_flags_edited_by_hand_break_its_rule() -> None:
    # rank 0 offloads a (800 elements) and keeps c (40) under 500 elements
    swapped = plan_json(gpu_embedding_size=500)
    move(swapped, 0, 0, "gpu")
    move(swapped, 0, 1, "host")
    assert problems_after(swapped) == [
        "ranks[0]: keeps 800 elements on the GPU, over gpu_embedding_size 500"
    ]
    both = plan_json(gpu_embedding_size=500)
    move(both, 0, 1, "host")  # c would have fitted
    assert problems_after(both) == [
        "ranks[0]: the pieces in host memory are not the largest beyond gpu_embedding_size"
    ]


def test_auto_flags_edited_by_hand_are_caught() -> None:
    data = plan_json(device_memory=3000, offload="auto")
    move(data, 0, 1, "host")  # c offloaded too, though it fits: the GPU holds nothing now
    assert problems_after(data) == [
        "ranks[0]: the piece of 'c' is in host memory but fits in the 2.93 KiB of device "
        "memory left"
    ]
    data = plan_json(device_memory=3000, offload="auto")
    move(data, 0, 0, "gpu")  # a back on the GPU: 3280 B over 3000 B
    assert problems_after(data) == [
        "ranks[0]: 3.20 KiB on the GPU, over the 2.93 KiB usable device memory"
    ]


def test_offload_none_plans_hold_nothing_in_host_memory() -> None:
    data = plan_json()
    data["ranks"][0]["table_parallel_weights"][0]["device"] = "host"
    data["shards"][0]["device"] = "host"
    data["ranks"][0]["host_bytes"] = 3200
    assert problems_after(data) == [
        "ranks[0]: 1 weights are in host memory but parameters.offload is none"
    ]


def test_host_bytes_and_the_host_limit_are_checked() -> None:
    data = plan_json(gpu_embedding_size=500)
    data["ranks"][1]["host_bytes"] = 1000
    assert problems_after(data) == [
        "ranks[1]: host_bytes do not match its weights in host memory"
    ]
    data = plan_json(gpu_embedding_size=500)
    data["parameters"]["host_memory"] = 2000  # a setting of the spec: the fingerprint says so
    assert problems_after(data) == [
        "ranks[0]: 3.12 KiB in host memory, over host_memory 1.95 KiB",
        "fingerprint: not that of the plan's own tables and parameters, so the plan was "
        "edited after planning; re-run planner plan",
    ]


def test_validate_prints_each_problem_and_exits_1(work: Path) -> None:
    data = plan_json(gpu_embedding_size=500)
    del data["shards"][1]["device"]
    (work / "p.json").write_text(json.dumps(data))
    result = invoke("validate", "p.json")
    assert result.exit_code == 1
    assert result.stderr == "p.json: ranks[1]: weight 0 is on host but the shard of 'b' says gpu\n"


# --- diff and compare --------------------------------------------------------------------


def test_diff_shows_pieces_moving_to_and_from_host_memory(work: Path) -> None:
    assert invoke("plan", "small.yaml", "-o", "old.json").exit_code == 0
    planned = invoke("plan", "small.yaml", "--gpu-embedding-size", "560", "-o", "new.json")
    assert planned.exit_code == 0
    result = invoke("diff", "old.json", "new.json")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("1 of 4 tables moved\n")
    assert "  parameters.offload: none -> upstream\n" in out
    assert "  parameters.gpu_embedding_size: null -> 560\n" in out
    assert "moved:\n  a: rank 0 -> rank 0 (host)\n" in out
    assert "rank bytes in host memory:\n  rank 0: 0 B -> 3.12 KiB (+3.12 KiB)\n" in out
    back = invoke("diff", "new.json", "old.json").stdout
    assert "  a: rank 0 (host) -> rank 0\n" in back


def test_compare_shows_gpu_and_host_columns_when_something_is_offloaded(work: Path) -> None:
    result = invoke(
        "compare", "small.yaml", "--strategy", "basic,auto", "--device-memory", "3000",
        "--offload", "auto",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "world", "strategy", "max/rank", "mean/rank", "imbalance", "shards", "GPU/rank",
        "host/rank", "fits",
    ]  # fmt: skip
    # basic: a (3200 B) offloaded on rank 0; auto cuts a and offloads nothing
    assert lines[2].split()[-5:] == ["2.19", "KiB", "3.12", "KiB", "yes"]
    assert lines[3].split()[-3:] == ["0", "B", "yes"]
    plain = invoke("compare", "small.yaml", "--strategy", "basic").stdout
    assert "host/rank" not in plain


# --- schema ------------------------------------------------------------------------------


def test_the_schema_knows_the_offload_fields(work: Path) -> None:
    schema = json.loads(invoke("schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    defs = schema["$defs"]
    for model in ("Shard", "WeightEntry"):  # a rank's weights as plan format 3 writes them
        assert defs[model]["properties"]["device"]["enum"] == ["gpu", "host"]
        assert "device" not in defs[model]["required"]
    assert "host_bytes" in defs["RankEntry"]["properties"]
    assert defs["Parameters"]["properties"]["offload"]["enum"] == ["none", "upstream", "auto"]
    data = plan_json(gpu_embedding_size=500, host_memory=10_000)
    assert list(validator.iter_errors(data)) == []
    data["shards"][0]["device"] = "cpu"
    assert not validator.is_valid(data)


def test_the_html_page_counts_only_gpu_bytes_against_the_limit() -> None:
    # rank 0 holds 3280 B, 3200 B of it in host memory: under the 3000 B limit on its GPU
    plan = make_plan(spec_from_dict({**SMALL, "device_memory": 3000, "offload": "auto"}))
    page = plan_page(plan, "small.yaml")
    assert "offloaded to host" in page
    assert "over the limit" not in page
    data = json.loads(plan.to_json())
    move(data, 0, 0, "gpu")  # a back on the GPU: 280 B over
    assert "280 B over the limit" in plan_page(parse_plan(data), "small.yaml")

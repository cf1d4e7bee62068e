"""The plan committed beside the example is the one the planner makes from its spec.

This is the check a team runs in CI on its own committed plans.
"""

from pathlib import Path

from click.testing import CliRunner

from planner.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_committed_example_plan_matches_its_spec() -> None:
    result = CliRunner().invoke(
        main,
        [
            "validate",
            str(EXAMPLES / "dlrm_tiny.plan.json"),
            "--spec",
            str(EXAMPLES / "dlrm_tiny.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ok (2 ranks, 4 shards)" in result.output

"""Plan where recommender embedding tables live on N GPUs, once, as a file to commit.

Library use::

    from planner import load_spec, make_plan, save_plan, load_plan
    plan = make_plan(load_spec("tables.yaml"))
    save_plan(plan, "tables.plan.json")
"""

from planner.consistency import load_plan, plan_from_dict, plan_problems
from planner.errors import PlanFileError, PlannerError, SpecError
from planner.plan import FORMAT_VERSION, Plan, save_plan
from planner.planning import make_plan
from planner.spec import InputSpec, Spec, TableSpec, load_spec, spec_from_dict
from planner.validation import spec_problems

__all__ = [
    "FORMAT_VERSION",
    "InputSpec",
    "Plan",
    "PlanFileError",
    "PlannerError",
    "Spec",
    "SpecError",
    "TableSpec",
    "load_plan",
    "load_spec",
    "make_plan",
    "plan_from_dict",
    "plan_problems",
    "save_plan",
    "spec_from_dict",
    "spec_problems",
]

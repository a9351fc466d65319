"""Capacity planner: how many GPUs of which kind, at what cost, with what latency.

The schema modules (profile, catalog, workload) import with pydantic and PyYAML only;
the rest (SimPy, matplotlib: ``pip install 'talkface[plan]'``) loads on first use. The
simulator itself is ``talkface.planner.simulate.simulate``::

    from talkface.planner import Profile, make_plan, write_plan

    plan = make_plan(Profile.from_published(), sessions=1000)
    write_plan(plan, "plan/")
"""

from __future__ import annotations

import importlib
from typing import Any

from talkface.planner.catalog import GPUCatalog, GPUKind
from talkface.planner.profile import (
    CostCurve,
    EngineProfile,
    MachineInfo,
    PipelineSettings,
    Profile,
    ServicePoint,
)
from talkface.planner.workload import SLO, Distribution, RenderJobs, Workload

_LAZY = {
    "make_plan": "talkface.planner.make",
    "Plan": "talkface.planner.plan",
    "PlanOptions": "talkface.planner.plan",
    "write_plan": "talkface.planner.report",
    "Deployment": "talkface.planner.deployment",
    "StageConfig": "talkface.planner.deployment",
    "SimOptions": "talkface.planner.simulate",
    "SimulationResult": "talkface.planner.simulate",
    "max_sessions": "talkface.planner.simulate",
}

__all__ = [
    "SLO",
    "CostCurve",
    "Distribution",
    "EngineProfile",
    "GPUCatalog",
    "GPUKind",
    "MachineInfo",
    "PipelineSettings",
    "Profile",
    "RenderJobs",
    "ServicePoint",
    "Workload",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'talkface.planner' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""Machine pools and gateways: where a plan's replicas and sessions run.

One owner for the placement truth that both the Serve config (``ray_actor_options``)
and the KubeRay RayService (worker groups) are written from:

- one pool per engine stage in a GPU cluster (``asr``, ``llm``, ``tts``, ``animator``),
  each node one GPU of the plan's kind holding ``slots_per_node`` replicas (``num_gpus``
  fractions of one card), each replica needing one unit of the pool's custom resource
  ``pool_<name>``, which only that pool's nodes declare;
- ``render``: spot CPU nodes for the ``Renderer`` deployment, one job per worker (the
  shipped worker drives the TTS and animator deployments; it holds no model itself);
- on a CPU-box plan a single ``box`` pool: identical boxes, each holding one replica of
  every deployment and its own gateway, as the box was profiled.

Gateways (``talkface serve --engines ray``: sessions, VAD, transport, video encoding) are
ordinary Ray nodes that run no Ray work; they are sized from the plan's per-session CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from talkface.planner.plan import Plan, StagePlan

DEPLOYMENT_NAMES = {
    "asr": "ASR",
    "llm": "LLM",
    "tts": "TTS",
    "animator": "Animator",
    "renderer": "Renderer",
}
"""Engine stage → Serve deployment name (the same table as ``talkface.serving.settings``)."""

GATEWAY_CPUS = 4
"""Cores of one gateway process: a starting point (not measured), a few event loops' worth."""
GATEWAY_MEMORY_GIB = 4
CPU_POOL_NODE_CPUS = 8
"""Cores of one node of a CPU engine pool in a cluster plan (an engine profiled on CPU)."""
NODE_OVERHEAD_CPUS = 1
"""A core per node for the raylet, the object store and the replica processes' Python."""
NODE_OVERHEAD_GIB = 4
BOX_MEMORY_GIB = 8
"""Memory of a CPU box when its profile does not say."""
_EPS = 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """One machine pool (a KubeRay worker group, a Ray node type).

    Attributes:
        name: the pool's name (``asr``, ``render``, ``box``...).
        deployments: Serve deployments placed on it.
        gpu: catalog GPU of every node, or None for CPU nodes.
        accelerator_type: Ray's accelerator label for ``gpu`` (None: not pinned).
        spot: nodes are spot / preemptible capacity.
        gpus_per_node: GPUs of one node (0 or 1).
        cpus_per_node: cores of one node.
        ray_cpus_per_node: logical CPUs its Ray node declares (they only place replicas).
        memory_gib_per_node: memory of one node.
        slots_per_node: replicas one node holds: the units of ``pool_<name>`` it declares.
        replica_cpus: ``num_cpus`` of one replica.
        replica_gpus: ``num_gpus`` of one replica.
        nodes_min: nodes at the quietest hour.
        nodes_average: nodes at the average load.
        nodes_max: nodes at the peak.
    """

    name: str
    deployments: tuple[str, ...]
    gpu: str | None
    accelerator_type: str | None
    spot: bool
    gpus_per_node: int
    cpus_per_node: float
    ray_cpus_per_node: float
    memory_gib_per_node: int
    slots_per_node: int
    replica_cpus: float
    replica_gpus: float
    nodes_min: int
    nodes_average: int
    nodes_max: int

    @property
    def resource(self) -> str:
        """The custom resource that pins replicas to this pool."""
        return f"pool_{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayPlan:
    """The gateway processes (``talkface serve --engines ray``) of a plan.

    Attributes:
        cores_at_peak: per-session CPU at the peak (VAD, encoding; the report derives it).
        cpus_per_process: cores one gateway process is given.
        processes_min: gateways at the quietest hour.
        processes_average: gateways at the average load.
        processes_max: gateways at the peak.
        sessions_per_process: sessions one gateway holds at the peak.
        on_boxes: the gateways share the CPU boxes with the engines (CPU-box plans).
    """

    cores_at_peak: float
    cpus_per_process: float
    processes_min: int
    processes_average: int
    processes_max: int
    sessions_per_process: int
    on_boxes: bool


def _scaled(count: int, share: float) -> int:
    return max(1, math.ceil(count * share - _EPS))


def gateway_plan(plan: Plan) -> GatewayPlan:
    """How many gateway processes the plan's sessions need, and how big."""
    cores = sum(sp.cpu_cores for sp in plan.stages.values() if sp.hosting == "per_session")
    average = plan.sessions / plan.peak_sessions
    quiet = average * plan.workload.trough_factor
    if plan.cpu_box is not None:
        box = plan.cpu_box
        boxes = box.boxes
        return GatewayPlan(
            cores_at_peak=cores,
            cpus_per_process=plan.profile.machine.cpu_cores,
            processes_min=_scaled(boxes, quiet),
            processes_average=_scaled(boxes, average),
            processes_max=boxes,
            sessions_per_process=box.sessions_per_box,
            on_boxes=True,
        )
    processes = max(1, math.ceil(cores / GATEWAY_CPUS - _EPS))
    return GatewayPlan(
        cores_at_peak=cores,
        cpus_per_process=GATEWAY_CPUS,
        processes_min=_scaled(processes, quiet),
        processes_average=_scaled(processes, average),
        processes_max=processes,
        sessions_per_process=math.ceil(plan.peak_sessions / processes),
        on_boxes=False,
    )


def replica_bounds(sp: StagePlan) -> tuple[int, int, int]:
    """(min, initial, max) replicas of an engine stage; never below one."""
    high = max(1, sp.replicas)
    initial = min(high, max(1, sp.replicas_average))
    return min(initial, max(1, sp.replicas_min)), initial, high


def render_workers(plan: Plan) -> int:
    """Render workers at the peak: the concurrent jobs the offline plan sized for."""
    return plan.offline.chosen.gpus_spot if plan.offline is not None else 1


def _engine_pool(plan: Plan, sp: StagePlan) -> Pool:
    engine = plan.profile.engines[sp.stage]
    low, initial, high = replica_bounds(sp)
    gpu = plan.catalog.gpus.get(sp.device)
    if gpu is not None:
        # num_gpus fractions come from the packing (memory and compute share of one card).
        slots = max(1, math.floor(1 / max(sp.num_gpus, 0.01) + _EPS))
        replica_cpus: float = 1
        gpus = 1
    else:
        replica_cpus = engine.threads
        slots = max(1, CPU_POOL_NODE_CPUS // engine.threads)
        gpus = 0
    return Pool(
        name=sp.stage,
        deployments=(DEPLOYMENT_NAMES[sp.stage],),
        gpu=sp.device if gpu is not None else None,
        accelerator_type=gpu.ray_accelerator_type if gpu is not None else None,
        spot=False,
        gpus_per_node=gpus,
        cpus_per_node=slots * replica_cpus + NODE_OVERHEAD_CPUS,
        ray_cpus_per_node=slots * replica_cpus + NODE_OVERHEAD_CPUS,
        memory_gib_per_node=math.ceil(slots * engine.rss_mb / 1024 + NODE_OVERHEAD_GIB),
        slots_per_node=slots,
        replica_cpus=replica_cpus,
        replica_gpus=sp.num_gpus if gpu is not None else 0.0,
        nodes_min=math.ceil(low / slots),
        nodes_average=math.ceil(initial / slots),
        nodes_max=math.ceil(high / slots),
    )


def _render_pool(plan: Plan) -> Pool:
    workers = render_workers(plan)
    cores = plan.offline.encoder_cores if plan.offline is not None else 0.0
    cpus = max(1, math.ceil(cores / workers - _EPS))
    return Pool(
        name="render",
        deployments=(DEPLOYMENT_NAMES["renderer"],),
        gpu=None,
        accelerator_type=None,
        spot=True,
        gpus_per_node=0,
        cpus_per_node=cpus + NODE_OVERHEAD_CPUS,
        ray_cpus_per_node=cpus + NODE_OVERHEAD_CPUS,
        memory_gib_per_node=NODE_OVERHEAD_GIB + 2 * cpus,
        # One worker per spot node: a preemption then takes one job, not several.
        slots_per_node=1,
        replica_cpus=cpus,
        replica_gpus=0.0,
        nodes_min=1,
        nodes_average=workers,
        nodes_max=workers,
    )


def _box_pool(plan: Plan) -> Pool:
    box = plan.cpu_box
    assert box is not None
    engines = [sp for sp in plan.stages.values() if sp.hosting == "engine"]
    names = (*(DEPLOYMENT_NAMES[sp.stage] for sp in engines), "Renderer")
    # A box runs one replica of each deployment, all sharing its cores as they did when it
    # was profiled; its Ray node declares the sum of their num_cpus to place them.
    ray_cpus = sum(plan.profile.engines[sp.stage].threads for sp in engines) + 1
    memory_gb = plan.profile.machine.memory_gb
    return Pool(
        name="box",
        deployments=names,
        gpu=None,
        accelerator_type=None,
        spot=False,
        gpus_per_node=0,
        cpus_per_node=plan.profile.machine.cpu_cores,
        ray_cpus_per_node=ray_cpus,
        memory_gib_per_node=math.floor(memory_gb) if memory_gb else BOX_MEMORY_GIB,
        slots_per_node=len(names),
        replica_cpus=0.0,  # per deployment: see deployment_cpus
        replica_gpus=0.0,
        nodes_min=box.boxes,
        nodes_average=box.boxes,
        nodes_max=box.boxes,
    )


def machine_pools(plan: Plan) -> tuple[Pool, ...]:
    """The plan's machine pools, engine stages first, then ``render`` (or one ``box``)."""
    if plan.cpu_box is not None:
        return (_box_pool(plan),)
    pools = [_engine_pool(plan, sp) for sp in plan.stages.values() if sp.hosting == "engine"]
    return (*pools, _render_pool(plan))


def pool_of(pools: tuple[Pool, ...], deployment: str) -> Pool:
    """The pool that holds ``deployment``."""
    return next(p for p in pools if deployment in p.deployments)


def deployment_cpus(plan: Plan, pool: Pool, deployment: str) -> float:
    """``num_cpus`` of one replica of ``deployment`` on ``pool``."""
    if pool.name != "box":
        return pool.replica_cpus
    stage = next((s for s, n in DEPLOYMENT_NAMES.items() if n == deployment), "renderer")
    return plan.profile.engines[stage].threads if stage in plan.profile.engines else 1

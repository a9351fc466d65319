"""The report's "Scale-out settings" section: deployments, machine pools, gateways.

Read from the same functions that write ``serve_config.yaml`` and ``rayservice.yaml``,
so the report cannot disagree with the files.
"""

from __future__ import annotations

from talkface.planner.plan import Plan
from talkface.planner.pools import gateway_plan, machine_pools
from talkface.planner.serve_config import serve_config


def _deployment_lines(plan: Plan) -> list[str]:
    lines = [
        "| deployment | min / initial / max replicas | target_ongoing_requests | "
        "max_ongoing / max_queued requests | max_batch_size | batch_wait_timeout_s | "
        "num_cpus | num_gpus | pool |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in serve_config(plan)["applications"][0]["deployments"]:
        a, u, r = d["autoscaling_config"], d.get("user_config", {}), d["ray_actor_options"]
        queued = "no limit" if d["max_queued_requests"] == -1 else d["max_queued_requests"]
        lines.append(
            f"| {d['name']} | {a['min_replicas']} / {a['initial_replicas']} / "
            f"{a['max_replicas']} | {a['target_ongoing_requests']} | "
            f"{d['max_ongoing_requests']} / {queued} | "
            f"{u.get('max_batch_size', '-')} | {u.get('batch_wait_timeout_s', '-')} | "
            f"{r['num_cpus']:g} | {r['num_gpus']:g} | {', '.join(r.get('resources', {}))} |"
        )
    return lines


def _pool_lines(plan: Plan) -> list[str]:
    lines = [
        "| pool (worker group) | one node | replicas per node | nodes min / initial / max |",
        "|---|---|---|---|",
    ]
    for p in machine_pools(plan):
        machine = f"{p.cpus_per_node:g} vCPU, {p.memory_gib_per_node} GiB"
        if p.gpu:
            machine = f"1 x {p.gpu}, " + machine
        if p.spot:
            machine += ", spot"
        lines.append(f"| {p.name} | {machine} | {p.slots_per_node} | "
                     f"{p.nodes_min} / {p.nodes_average} / {p.nodes_max} |")
    return lines


def _honesty_lines(plan: Plan) -> list[str]:
    lines = []
    pool_gpus = sum(p.nodes_max * p.gpus_per_node for p in machine_pools(plan))
    if pool_gpus > plan.total_gpus:
        lines.append(
            f"- The pools hold **{pool_gpus} GPUs** at the peak where the packing above "
            f"needs {plan.total_gpus}: a pool's nodes serve one stage only, so replicas of "
            "different stages never share a card there. Costs above are for the packing."
        )
    if plan.offline is not None:
        lines.append(
            "- The shipped `Renderer` is a CPU worker that sends its speech and animation to "
            "the `TTS` and `Animator` deployments; the spot GPUs priced under *Offline "
            "render jobs* describe a worker holding both models on its own GPU, which is "
            "not shipped. Render jobs therefore add to the interactive pools' load, which "
            "are sized for live sessions only."
        )
    return lines


def scale_out_lines(plan: Plan) -> list[str]:
    """The Markdown lines of the section (without its heading)."""
    gateways = gateway_plan(plan)
    lines = [
        "`serve_config.yaml` is a Ray Serve config for the `talkface` application "
        "(`talkface.serving.app:build_app`, no HTTP route): deploy it with "
        "`talkface deploy plan/ --ray-address auto`. `rayservice.yaml` is the same config "
        "inside a KubeRay `RayService` with one worker group per machine pool and one for "
        "the gateways (`kubectl apply -f rayservice.yaml`; docs/scale-out.md). Per "
        "deployment:",
        "",
        *_deployment_lines(plan),
        "",
        "Each replica needs one unit of its pool's custom resource; each node of a pool "
        "declares as many units as replicas it holds:",
        "",
        *_pool_lines(plan),
        "",
        "**Gateways.** Sessions (VAD, WebRTC/WebSocket, video encoding) live in gateway "
        "processes, `talkface serve --engines ray --ray-address auto`, which join the Ray "
        "cluster as ordinary nodes and reach the deployments through handles. ",
    ]
    if gateways.on_boxes:
        lines[-1] += (
            f"On CPU boxes each box runs one: **{gateways.processes_max} gateways**, "
            f"{gateways.sessions_per_process} sessions each at the peak."
        )
    else:
        lines[-1] += (
            f"Per-session work takes {gateways.cores_at_peak:,.1f} cores at the peak (see "
            f"the vad and encoder stages), so **{gateways.processes_max} gateways** of "
            f"{gateways.cpus_per_process:g} cores, {gateways.sessions_per_process} sessions "
            f"each; {gateways.processes_average} at the average load and "
            f"{gateways.processes_min} at the quietest hour. The `gateway` worker group is "
            "fixed at the peak count: Ray's autoscaler sees no Ray work on those nodes and "
            "would remove them with their sessions. Sessions live in their gateway, so a "
            "load balancer in front of several must be sticky."
        )
    honesty = _honesty_lines(plan)
    if honesty:
        lines += ["", *honesty]
    return lines

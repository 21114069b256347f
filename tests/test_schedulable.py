"""Unschedulable pods (a GPU pool that ran out): noticed, reported, not asked for again."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.controller.schedulable import (
    CONDITION_TYPE,
    REASON_GPU,
    REASON_OK,
    REASON_OTHER,
    assess,
    cap_scale_up,
)

GPU_MSG = ("0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes "
           "are available: 4 No preemption victims found for incoming pod.")
TAINT_MSG = "0/4 nodes are available: 4 node(s) had untolerated taint {gpu: present}."


def pod(name: str, *, phase: str = "Running", unschedulable: str | None = None,
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T21:00:00Z"
    conds = []
    if unschedulable is not None:
        conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": unschedulable})
    elif phase == "Running":
        conds.append({"type": "PodScheduled", "status": "True"})
    return {"metadata": meta, "status": {"phase": phase, "conditions": conds}}


@pytest.mark.parametrize(("pods", "counts", "reason"), [
    pytest.param([pod("a"), pod("b")], (2, 0, 0), REASON_OK, id="all running"),
    pytest.param([pod("a"), pod("b", phase="Pending", unschedulable=GPU_MSG),
                  pod("c", phase="Pending", unschedulable=GPU_MSG)], (3, 2, 2), REASON_GPU,
                 id="two short of GPUs"),
    pytest.param([pod("a"), pod("b", phase="Pending", unschedulable=TAINT_MSG)], (2, 1, 0),
                 REASON_OTHER, id="unschedulable for another reason"),
    pytest.param([pod("a"), pod("b", phase="Pending")], (2, 0, 0), REASON_OK,
                 id="pending but not yet tried by the scheduler"),
    pytest.param([pod("a"), pod("b", phase="Pending", unschedulable=GPU_MSG, deleting=True)],
                 (1, 0, 0), REASON_OK, id="a deleted pending pod no longer counts"),
    pytest.param([], (0, 0, 0), REASON_OK, id="no pods"),
])
def test_assess_counts_the_pods_the_scheduler_refused(
        pods: list[dict[str, Any]], counts: tuple[int, int, int], reason: str) -> None:
    a = assess(pods)
    assert (a.pods, a.unschedulable, a.insufficient_gpu) == counts
    assert a.reason == reason
    assert a.schedulable == counts[0] - counts[1]


def test_the_condition_and_event_name_the_gpu_shortage() -> None:
    a = assess([pod("a"), pod("b", phase="Pending", unschedulable=GPU_MSG)])
    status, reason, message = a.condition()
    assert (status, reason) == ("False", REASON_GPU)
    assert "1 of 2 pods cannot be scheduled" in message and "nvidia.com/gpu" in message
    assert a.event() == ("Warning", REASON_GPU, message)
    ok = assess([pod("a")])
    assert ok.condition()[:2] == ("True", REASON_OK) and ok.event() is None
    assert CONDITION_TYPE == "CapacityAvailable"


@pytest.mark.parametrize(("desired", "current", "short", "expected"), [
    # 8 asked, 2 of them Pending: asking for 10 would only queue two more pods.
    pytest.param(10, 8, True, 8, id="scale-up held while pods wait for GPUs"),
    pytest.param(5, 8, True, 5, id="scale-down goes through"),
    pytest.param(8, 8, True, 8, id="hold stays a hold"),
    pytest.param(10, 8, False, 10, id="no shortage: no cap (until it can)"),
])
def test_a_scale_up_stops_at_the_current_count_while_pods_are_unschedulable(
        desired: int, current: int, short: bool, expected: int) -> None:
    pods = [pod(str(i)) for i in range(6)] + [
        pod(f"p{i}", phase="Pending", unschedulable=GPU_MSG if short else None)
        for i in range(2)]
    assert cap_scale_up(desired, current, assess(pods)) == expected

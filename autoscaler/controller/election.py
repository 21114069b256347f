"""Leader election on a ``coordination.k8s.io/v1`` Lease, with release on shutdown.

The ``kubernetes`` client ships an elector, but it blocks in its own loops, cannot be
stopped, and never releases the lease, so a rolling update would leave the cluster without a
leader for a whole lease duration. This one is a ``step()`` the controller calls, with the
semantics of client-go's: the holder renews every ``retry_period_s``; a candidate takes the
lease when ``renewTime + leaseDurationSeconds`` has passed; every write carries the
``resourceVersion`` it read, so two candidates racing for an expired lease cannot both win
(one gets 409 Conflict); on shutdown the holder clears ``holderIdentity`` so a peer takes
over at its next retry instead of after the lease runs out.

The renew deadline is a watchdog, not a check made when a call returns: ``leading()`` is
true only while the last successful renew is younger than ``renew_deadline_s`` on this
process' monotonic clock, so a leader whose API calls hang stops acting (and reports
``autoscaler_is_leader 0``) when the deadline passes, while the hung call is still in
flight. With the default 15-s lease a peer may take over 15 s after the last renew; we stop
at 10 s, leaving 5 s for clock-rate differences and the last in-flight write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from autoscaler.controller.kube import Conflict, KubeError, NotFound, ObjectMeta, RawLease
from autoscaler.errors import TransientError

log = logging.getLogger("autoscaler.election")


class ApiCaller(Protocol):
    """The one call the elector makes (``KubeClient.call``; a fake in tests)."""

    def call(self, method: str, path: str, body: Any = None,
             query: list[tuple[str, str]] | None = None,
             content_type: str = "application/json") -> Any: ...


@dataclass(frozen=True, slots=True)
class ElectionConfig:
    namespace: str
    name: str = "inference-autoscaler"
    identity: str = ""
    lease_duration_s: int = 15
    """A dead leader's lease is taken over after at most this long (client-go: 15 s)."""
    renew_deadline_s: float = 10.0
    """A leader that could not renew for this long stops acting (before the lease expires,
    so two leaders never act at once)."""
    retry_period_s: float = 2.0


def _fmt(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> float | None:
    # MicroTime, e.g. 2026-11-23T23:59:01.123456Z (Python 3.11 reads the Z).
    return datetime.fromisoformat(text).timestamp() if text else None


class LeaseElector:
    """Call ``step(now)`` every ``retry_period_s``; ``leading()`` says whether to act."""

    def __init__(self, kube: ApiCaller, config: ElectionConfig, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.config = config
        self.is_leader = False
        """Whether the last completed step held the lease (see ``leading()``)."""
        self.last_renew: float | None = None
        self.monotonic = monotonic
        self._renewed_at: float | None = None
        """``monotonic()`` at the start of the step that last wrote the lease."""
        self._step_started = monotonic()
        self.transitions = 0
        self._path = (f"/apis/coordination.k8s.io/v1/namespaces/{config.namespace}/leases/"
                      f"{config.name}")

    def _body(self, now: float, acquire: float, transitions: int, rv: str | None,
              holder: str) -> RawLease:
        meta: ObjectMeta = {"name": self.config.name, "namespace": self.config.namespace}
        if rv is not None:
            meta["resourceVersion"] = rv
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": holder,
                         "leaseDurationSeconds": self.config.lease_duration_s,
                         "acquireTime": _fmt(acquire), "renewTime": _fmt(now),
                         "leaseTransitions": transitions}}

    def leading(self) -> bool:
        """Whether to act now: the lease is ours and was renewed within the renew deadline.
        Reads no network and takes no lock, so it answers at once while ``step`` hangs."""
        renewed = self._renewed_at
        return (self.is_leader and renewed is not None
                and self.monotonic() - renewed < self.config.renew_deadline_s)

    def step(self, now: float) -> bool:
        """Try to acquire or renew; returns whether this process leads now."""
        # The renewTime we write is ``now``, taken before the call: a peer counts the lease
        # from there, so our deadline does too (a PUT that took 4 s bought 4 s less).
        self._step_started = self.monotonic()
        try:
            self._try(now)
        except (TransientError, KubeError) as exc:
            log.warning("lease %s: %s", self.config.name, exc)
            if self.is_leader and not self.leading():
                log.error("could not renew the lease within %.0f s: stepping down",
                          self.config.renew_deadline_s)
                self.is_leader = False
        return self.leading()

    def _try(self, now: float) -> None:
        me = self.config.identity
        try:
            lease: RawLease = self.kube.call("GET", self._path)
        except NotFound:
            coll = self._path.rsplit("/", 1)[0]
            try:
                self.kube.call("POST", coll, body=self._body(now, now, 0, None, me))
            except Conflict:
                return  # a peer created it first
            self._became_leader(now)
            return
        spec = lease.get("spec", {})
        rv = lease["metadata"]["resourceVersion"]
        holder = spec.get("holderIdentity") or ""
        renew = _parse(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration_s)
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == me:
            acquire = _parse(spec.get("acquireTime")) or now
            self._write(self._body(now, acquire, transitions, rv, me), now)
            return
        self.is_leader = False
        expired = not holder or renew is None or now > renew + duration
        if expired:
            self._write(self._body(now, now, transitions + 1, rv, me), now)

    def _write(self, body: RawLease, now: float) -> None:
        try:
            self.kube.call("PUT", self._path, body=body)
        except Conflict:
            self.is_leader = False  # someone else wrote in between: they win
            return
        self._became_leader(now)

    def _became_leader(self, now: float) -> None:
        if not self.is_leader:
            self.transitions += 1
            log.info("became leader", extra={"identity": self.config.identity})
        self.is_leader = True
        self.last_renew = now
        self._renewed_at = self._step_started

    def release(self, now: float) -> None:
        """Give the lease up (on SIGTERM) so a peer takes over at its next retry."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease: RawLease = self.kube.call("GET", self._path)
            spec = lease.get("spec", {})
            if (spec.get("holderIdentity") or "") != self.config.identity:
                return
            body = self._body(now, now, int(spec.get("leaseTransitions") or 0),
                              lease["metadata"]["resourceVersion"], "")
            body["spec"]["leaseDurationSeconds"] = 1
            self.kube.call("PUT", self._path, body=body)
            log.info("released the lease")
        except (TransientError, KubeError) as exc:
            log.warning("could not release the lease: %s", exc)

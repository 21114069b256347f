"""Per-pod counters from fleet totals: how the twin keeps every pod's counters monotonic.

The simulator knows fleet totals (requests arrived, tokens, TTFT histogram counts). A real
fleet exports them per pod, and Prometheus sums ``rate()`` over pods. Dividing the fleet
total by the pod count would make a pod's counter *drop* when a pod is added (100 / 2 = 50
-> 100 / 3 = 33), which ``rate()`` reads as a counter reset. So the ledger hands out each
fleet *increment* to the pods that are ready when it happens:

* integer channels (requests, tokens, histogram bucket counts) move in whole units: the
  fleet's emitted total is ``floor(fleet total)``; an increment ``d`` over ``R`` pods gives
  each ``d // R`` and one more to ``d % R`` pods, starting at a per-channel offset that
  rotates, so over time every pod gets the same share. Example: d = 7, R = 3, offset 0 ->
  pods get 3, 2, 2 and the offset moves to 1;
* float channels (GPU busy seconds, the TTFT histogram's ``_sum``) split evenly; the TTFT
  sum splits in proportion to each pod's new TTFT count, so every pod's mean TTFT is the
  fleet's;
* a pod that goes away takes its counts with it (``retired``); a new pod starts from 0;
  increments while no pod is ready are kept in ``unattributed`` (no pod exists to export
  them). Hence, exactly: sum over live pods + retired + unattributed = emitted fleet total.

Pure bookkeeping: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class PodLedger:
    """Integer and float counter channels per pod, for one target."""

    def __init__(self, n_int: int, n_float: int) -> None:
        self.n_int = n_int
        self.n_float = n_float
        self.pods: list[str] = []
        self.ints: IntArray = np.zeros((0, n_int), dtype=np.int64)
        self.floats: FloatArray = np.zeros((0, n_float), dtype=np.float64)
        self.emitted_ints: IntArray = np.zeros(n_int, dtype=np.int64)
        """floor() of the fleet totals handed out so far (or kept as unattributed)."""
        self.fleet_floats: FloatArray = np.zeros(n_float, dtype=np.float64)
        self.retired_ints: IntArray = np.zeros(n_int, dtype=np.int64)
        self.retired_floats: FloatArray = np.zeros(n_float, dtype=np.float64)
        self.unattributed_ints: IntArray = np.zeros(n_int, dtype=np.int64)
        self.unattributed_floats: FloatArray = np.zeros(n_float, dtype=np.float64)
        self._offset: IntArray = np.zeros(n_int, dtype=np.int64)

    # --- pod set ------------------------------------------------------------------------
    def set_pods(self, pods: Sequence[str]) -> None:
        """Make ``pods`` the live set: gone pods retire their counts, new ones start at 0."""
        if list(pods) == self.pods:
            return
        index = {name: i for i, name in enumerate(self.pods)}
        keep = [index[p] for p in pods if p in index]
        gone = [i for name, i in index.items() if name not in set(pods)]
        if gone:
            self.retired_ints += self.ints[gone].sum(axis=0)
            self.retired_floats += self.floats[gone].sum(axis=0)
        ints = np.zeros((len(pods), self.n_int), dtype=np.int64)
        floats = np.zeros((len(pods), self.n_float), dtype=np.float64)
        rows = [i for i, p in enumerate(pods) if p in index]
        if keep:
            ints[rows] = self.ints[keep]
            floats[rows] = self.floats[keep]
        self.pods = list(pods)
        self.ints, self.floats = ints, floats
        if self.pods:
            self._offset %= len(self.pods)

    def reset_pod(self, pod: str) -> bool:
        """The pod restarted: its counters go back to 0 (its counts retire). False if the
        pod is unknown."""
        if pod not in self.pods:
            return False
        i = self.pods.index(pod)
        self.retired_ints += self.ints[i]
        self.retired_floats += self.floats[i]
        self.ints[i] = 0
        self.floats[i] = 0.0
        return True

    # --- increments ---------------------------------------------------------------------
    def add(self, int_totals: FloatArray, float_deltas: FloatArray,
            float_weights: Sequence[tuple[int, int] | None]) -> None:
        """Hand out new fleet totals of the integer channels (cumulative, may be fractional)
        and increments of the float channels. ``float_weights[j]`` says how float channel
        ``j`` splits: None evenly, ``(a, b)`` in proportion to each pod's increment of the
        integer channels ``a:b`` (a histogram's buckets, for its ``_sum``)."""
        target = np.floor(np.maximum(int_totals, 0.0) + 1e-9).astype(np.int64)
        d = np.maximum(target - self.emitted_ints, 0)
        self.emitted_ints += d
        R = len(self.pods)
        if R == 0:
            self.unattributed_ints += d
            self.unattributed_floats += float_deltas
            self.fleet_floats += float_deltas
            return
        # Only the channels that moved (a tick fills one or two of ~25 TTFT buckets); a
        # plain loop over them is cheaper than broadcasting over all, which matters at
        # 1,000 targets.
        inc = np.zeros((R, self.n_int), dtype=np.int64)
        offsets = self._offset
        for c in np.flatnonzero(d).tolist():
            base, rem = divmod(int(d[c]), R)
            off = int(offsets[c])
            inc[:, c] = base
            for j in range(rem):
                inc[(off + j) % R, c] += 1
            offsets[c] = (off + rem) % R
        self.ints += inc
        self.fleet_floats += float_deltas
        for j, w in enumerate(float_weights):
            if w is None:
                self.floats[:, j] += float_deltas[j] / R
                continue
            col = inc[:, w[0]:w[1]].sum(axis=1)
            total = int(col.sum())
            if total > 0:
                self.floats[:, j] += float_deltas[j] * col / total
            else:
                self.floats[:, j] += float_deltas[j] / R

    # --- totals -------------------------------------------------------------------------
    def exported_ints(self) -> IntArray:
        return np.asarray(self.ints.sum(axis=0), dtype=np.int64)

    def exported_floats(self) -> FloatArray:
        return np.asarray(self.floats.sum(axis=0), dtype=np.float64)

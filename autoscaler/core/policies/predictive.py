"""``predictive``: plan capacity for the demand forecast over the cold start, correct on SLO slips.

A replica asked for now serves only after ``cold_start_s``, and the next decision comes one
``sync_period_s`` later, so the count chosen now must carry the demand over the *lead time*
[now, now + cold start + sync]. Each step:

1. Demand: REQUEST_RATE (requests/s, a ~60 s ``rate()``) joins a history in state (the last
   ``predictive.history_s`` seconds) and updates the trend forecaster incrementally (O(1)).
   Missing or stale => hold (``valid=False``): the caller does not scale.
2. Forecast: the ``headroom_quantile`` (p90 by default) of the forecast demand at each step of
   the lead time; plan for its peak, and never for less than the demand observed now.
   Calibrated headroom: every forecast's promised mean peak is scored once its lead time has
   passed (realised peak - promised, kept for the last 4 h); with at least 40 such errors
   the plan is the mean peak plus the ``headroom_quantile`` of those errors instead of the
   forecaster's own interval (a quantile correction learned from residuals).
   With ``predictive.forecaster`` set to an ``autoscaler.forecast`` model (``auto``,
   ``profile``, ``damped``, ...) the samples are also averaged into 60-s bins (a chunked
   immutable history, ``RateBins``, of up to 28 days); each completed bin updates the model
   (O(1)), the model is refitted at every 6-hour boundary of the time axis
   (``floor(now / 21600)`` changes; ``auto`` re-chooses its models then), and the plan is the
   peak of its quantile over the bins that overlap the lead time. Until 6 hours of bins
   exist (or when no model could be fitted) the trend forecaster stands in and the state
   counts the fallback (``forecast_fallbacks``); the Decision names the model used.
3. Capacity: ceil(planned / (capacity.requestsPerSecond x predictive.targetUtilization)).
4. Reactive corrections: a queue adds ceil(queue / (capacity.requestsPerSecond x
   backlogDrainSeconds)) replicas (BacklogDrain). A TTFT percentile above the SLO forbids
   scaling down and asks for at least one more replica than are *ready* (SLOCorrection):
   counting from ready rather than from asked-for replicas means a slip that lasts through a
   cold start asks for one extra replica, not one more every step.
5. Scale down only to the highest recommendation of the last ``scale_down_window_s``
   (ForecastHold), then HPA-shaped behaviour (``apply_behavior``) and min/max.

Partial data: a missing QUEUE_DEPTH or TTFT signal does not block the decision, but then the
count may only go up (reason MetricsMissing when that is what holds it).

Worked example (defaults: capacity 4 req/s, utilisation 0.8, cold start 120 s, sync 15 s):
the lead time is 135 s = 9 steps. If the p90 forecast peaks at 14.1 req/s within it, the
plan is ceil(14.1 / 3.2) = ceil(4.41) = 5 replicas, even when 12 req/s (4 replicas) is all
that arrives now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

from autoscaler.core.behavior import apply_behavior
from autoscaler.core.policies.common import clamp, hold, replicas_for_rate
from autoscaler.core.spec import Spec, ttft_objective
from autoscaler.core.trend import TrendForecaster, TrendResult
from autoscaler.core.types import Decision, PolicyState, Reason, Signal, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.forecast import MODEL_NAMES, Forecast, ForecastResult, make_forecaster
from autoscaler.forecast.binning import RateBins

# Slack so that a demand of exactly k x per-replica rate (after float noise) needs k replicas.
_EPS = 1e-9

TREND = "trend"
"""The built-in forecaster's name (``predictive.forecaster``)."""

BIN_S = 60.0
"""Resolution of the history kept for the ``autoscaler.forecast`` models (seconds)."""
MODEL_HISTORY_S = 28 * 86_400.0
"""Bins kept for them: four weeks, the models' own ``max_history_s``."""
REFIT_EVERY_S = 6 * 3600.0
"""Refit at every multiple of this on the time axis (00:00, 06:00, ... when it starts at a
midnight): deterministic, and 56 fits in a 14-day replay (~0.1 s each for ``auto``)."""
MIN_MODEL_HISTORY_S = 6 * 3600.0
"""Less history than this (360 bins) and the trend forecaster stands in: a model fitted on
minutes of data knows no level, let alone a daily cycle."""
LEAD_ERROR_SAMPLES = 960
"""Lead-time forecast errors kept for the calibrated headroom: 4 h at a 15-s sync."""
MIN_LEAD_ERRORS = 40
"""Fewer errors than this (10 minutes at 15 s) and the forecaster's own quantile plans."""
_ERROR_WEIGHT = 0.05
"""Weight of the newest 1-bin absolute error in ``forecast_error`` (~20 bins of memory)."""


@dataclass(frozen=True, slots=True)
class PredictiveState(PolicyState):
    """The predictive policy's memory between steps."""

    history: tuple[tuple[float, float], ...] = ()
    """(time, observed request rate) within the last ``history_s`` seconds."""
    trend: TrendResult | None = None
    """The trend forecaster's smoothed state after the last observation."""
    recent: tuple[tuple[float, int], ...] = ()
    """(time, recommendation) within the last ``scale_down_window_s`` seconds."""
    bins: RateBins | None = None
    """60-s bins of the request rate, for a named (non-trend) forecaster; None with trend."""
    model: ForecastResult | None = None
    """The named forecaster's fitted result, updated per completed bin; None until fitted."""
    fitted_at: float | None = None
    """Time of the last (re)fit of ``model``."""
    forecast_error: float = math.nan
    """EWMA of |bin value - the model's 1-bin-ahead forecast| (requests/s)."""
    forecast_fallbacks: int = 0
    """Decisions that fell back to the trend forecaster while a named one was configured."""
    pending: tuple[tuple[float, float], ...] = ()
    """(time, forecast mean peak) of decisions whose lead time has not yet passed."""
    lead_errors: tuple[float, ...] = ()
    """Realised peak minus forecast mean peak over each past lead time, requests/s (newest
    last, at most ``LEAD_ERROR_SAMPLES``)."""


@dataclass(frozen=True, slots=True)
class DemandForecast:
    """What a forecaster says about the lead time: the point and the planning quantile."""

    mean_peak: float
    """Peak of the point forecast over the lead time, requests/s."""
    quantile_peak: float
    """Peak of the ``headroom_quantile`` over the lead time, requests/s."""
    model: str = TREND
    """Which model produced it."""


def trend_forecaster(spec: Spec) -> TrendForecaster:
    """The built-in forecaster, one step per decision period."""
    return TrendForecaster(step_s=spec.sync_period_s)


def _lead_steps(spec: Spec) -> int:
    # Worked number: cold start 120 s + sync 15 s = 135 s = 9 steps of 15 s.
    return max(1, math.ceil((spec.cold_start_s + spec.sync_period_s) / spec.sync_period_s
                            - _EPS))


def _updated_trend(prev: PredictiveState, history: tuple[tuple[float, float], ...],
                   spec: Spec, now: float, rate: float) -> TrendResult:
    """The forecaster state after this step's observation; refit from history if the model
    changed (a new sync period) or the last observation is older than the whole history."""
    model = trend_forecaster(spec)
    result = prev.trend
    if (result is None or result.model != model
            or (result.n > 0 and now - result.last_time > spec.predictive.history_s)):
        return model.fit([t for t, _ in history], [v for _, v in history])
    return result.update(now, rate)


def forecast_demand(state: PredictiveState, spec: Spec, now: float | None = None
                    ) -> DemandForecast:
    """The seam for forecasters: the named model's forecast when ``state.model`` holds one
    (and ``now`` is given), else the built-in trend."""
    name = spec.predictive.forecaster
    if name != TREND and name not in MODEL_NAMES:
        raise SpecError("predictive.forecaster", name,
                        f"one of {', '.join((TREND, *MODEL_NAMES))}")
    if name != TREND and state.model is not None and state.bins is not None and now is not None:
        lead_s = _lead_steps(spec) * spec.sync_period_s
        # Bins overlapping [now, now + lead]; step 1 is the bin after the last completed one
        # (the bin now is in). Worked number: now = 615 s, lead 135 s, completed bins end at
        # index 10 (600 s): the window reaches bin floor(750 / 60) = 12, so steps 1..3.
        steps = math.floor((now + lead_s) / BIN_S) - state.bins.end_index + 1
        f = state.model.forecast(max(1, steps))
        q = _quantile(f, spec.predictive.headroom_quantile)
        mean_peak, q_peak = float(max(f.mean)), float(max(q))
        if math.isfinite(mean_peak) and math.isfinite(q_peak):
            return DemandForecast(mean_peak=mean_peak, quantile_peak=q_peak,
                                  model=f"{name}->{state.model.model}")
    if state.trend is None:
        raise SpecError("predictive.forecaster", name, "a forecaster with at least one sample")
    fc = state.trend.forecast(_lead_steps(spec))
    q_t = fc.quantile(spec.predictive.headroom_quantile)
    return DemandForecast(mean_peak=max(fc.mean), quantile_peak=max(q_t),
                          model=TREND if name == TREND else f"{TREND} (fallback)")


def _quantile(f: Forecast, q: float) -> tuple[float, ...]:
    """The ``q`` quantile per step, interpolated linearly in level between the forecast's
    levels (0.9 and 0.95 give 0.925 as their midpoint). Past the top level (0.99) it is
    extrapolated on the normal scale from the median: q(0.999) = q50 + (q99 - q50) x
    z(0.999) / z(0.99) = q50 + 1.33 x (q99 - q50)."""
    levels = sorted(f.quantiles)
    if q in f.quantiles:
        return tuple(float(v) for v in f.quantiles[q])
    top = levels[-1]
    if q > top and 0.5 in f.quantiles:
        k = _z(q) / _z(top)
        med, hi = f.quantiles[0.5], f.quantiles[top]
        return tuple(float(max(0.0, m + k * (h - m))) for m, h in zip(med, hi, strict=True))
    lo_l = max((lv for lv in levels if lv < q), default=levels[0])
    hi_l = min((lv for lv in levels if lv > q), default=levels[-1])
    w = 0.0 if hi_l == lo_l else (q - lo_l) / (hi_l - lo_l)
    lo_v, hi_v = f.quantiles[lo_l], f.quantiles[hi_l]
    return tuple(float(a + w * (b - a)) for a, b in zip(lo_v, hi_v, strict=True))


def _z(q: float) -> float:
    return NormalDist().inv_cdf(q)


def _updated_model(prev: PredictiveState, spec: Spec, now: float, rate: float
                   ) -> tuple[RateBins, ForecastResult | None, float | None, float]:
    """Bins, fitted model, fit time and running error after this step's sample."""
    bins = (prev.bins if prev.bins is not None
            else RateBins(BIN_S, round(MODEL_HISTORY_S / BIN_S)))
    bins, done = bins.add(now, rate)
    model, fitted_at, err = prev.model, prev.fitted_at, prev.forecast_error
    if prev.bins is not None and bins.open_index is not None and not done \
            and len(bins) < len(prev.bins):
        model = None  # the history started afresh after a long silence
    if model is not None:
        for v in done:
            if math.isfinite(v):
                pred = float(model.forecast(1).mean[0])
                if math.isfinite(pred):
                    e = abs(v - pred)
                    err = e if math.isnan(err) else (1 - _ERROR_WEIGHT) * err + _ERROR_WEIGHT * e
            model = model.update(v)
    due = (model is None or fitted_at is None
           or math.floor(now / REFIT_EVERY_S) > math.floor(fitted_at / REFIT_EVERY_S))
    if due and len(bins) * BIN_S >= MIN_MODEL_HISTORY_S:
        fitted = make_forecaster(spec.predictive.forecaster, resolution_s=BIN_S).fit(
            bins.history())
        model = fitted if math.isfinite(float(fitted.forecast(1).mean[0])) else None
        fitted_at = now
    return bins, model, fitted_at, err


def _resolved_errors(prev: PredictiveState, history: tuple[tuple[float, float], ...],
                     lead_s: float, now: float) -> tuple[tuple[tuple[float, float], ...],
                                                         tuple[float, ...]]:
    """Score the forecasts whose lead time has passed against the demand that came.

    A forecast made at t promised a mean peak for [t, t + lead]; once now >= t + lead the
    realised peak of the observed rate in that window is known, and realised - promised is
    one sample of the forecaster's *lead-time* error. Worked number: promised 10 req/s, the
    rate over the next 135 s peaked at 13 req/s: error +3 req/s.
    """
    pending = prev.pending
    errors = prev.lead_errors
    i = 0
    new_errors: list[float] = []
    while i < len(pending) and pending[i][0] + lead_s <= now:
        t_made, promised = pending[i]
        seen = [v for t, v in history if t_made < t <= t_made + lead_s]
        if seen:  # a window with no sample (an outage) teaches nothing
            new_errors.append(max(seen) - promised)
        i += 1
    if new_errors:
        errors = (*errors, *new_errors)[-LEAD_ERROR_SAMPLES:]
    return pending[i:], errors


def _calibrated_peak(mean_peak: float, errors: tuple[float, ...], q: float) -> float | None:
    """Mean peak plus the ``q`` quantile of past lead-time errors (None if too few)."""
    if len(errors) < MIN_LEAD_ERRORS:
        return None
    ordered = sorted(errors)
    # Nearest rank: with 960 errors, q = 0.9 takes the 864th smallest.
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return mean_peak + max(0.0, ordered[k])


def _live_objective(snapshot: Snapshot, spec: Spec, now: float) -> float:
    """The TTFT objective for the fleet's mean prompt (prompt-token rate / request rate)
    when both rates are fresh and positive, else the flat ``ttftSeconds``. Worked number:
    2 s + 0.001 s/token x (40,000 tokens/s / 20 req/s = 2,000 tokens) = 4 s."""
    if spec.slo.ttft_seconds_per_prompt_token <= 0.0:
        return spec.slo.ttft_seconds
    prompt = snapshot.get(Signal.PROMPT_TOKENS_RATE, now, spec.max_metric_age_s)
    rate = snapshot.get(Signal.REQUEST_RATE, now, spec.max_metric_age_s)
    if prompt is None or rate is None or not rate > 0.0 or not prompt >= 0.0:
        return spec.slo.ttft_seconds
    return ttft_objective(spec, prompt / rate)


def _ttft_slip(snapshot: Snapshot, spec: Spec, now: float) -> tuple[float | None, str]:
    """The TTFT percentile that matches the attainment target (p99 above 95 %, else p95),
    falling back to the other one; None when neither is fresh."""
    first, second = ((Signal.TTFT_P99, Signal.TTFT_P95) if spec.slo.target_attainment > 0.95
                     else (Signal.TTFT_P95, Signal.TTFT_P99))
    for sig in (first, second):
        value = snapshot.get(sig, now, spec.max_metric_age_s)
        if value is not None:
            return value, "p99" if sig == Signal.TTFT_P99 else "p95"
    return None, ""


def decide(snapshot: Snapshot, state: State, spec: Spec, now: float) -> tuple[Decision, State]:
    params = spec.predictive
    rate = snapshot.get(Signal.REQUEST_RATE, now, spec.max_metric_age_s)
    if rate is None:
        if Signal.REQUEST_RATE in snapshot.metrics:
            return hold(snapshot, state, Reason.METRICS_STALE,
                        f"the request-rate sample is older than {spec.max_metric_age_s:g} s "
                        "or not a number; holding")
        return hold(snapshot, state, Reason.METRICS_MISSING, "no request-rate sample; holding")
    rate = max(0.0, rate)

    prev = state.policy if isinstance(state.policy, PredictiveState) else PredictiveState()
    cutoff = now - params.history_s
    old = prev.history
    if old and old[-1][0] >= now:
        # A repeated call at the same time (or a clock that went back): replace, not append.
        old = tuple(s for s in old if s[0] < now)
    # History is time-ordered, so only its front can be too old: O(dropped), not O(history).
    i = 0
    while i < len(old) and old[i][0] <= cutoff:
        i += 1
    history = (*old[i:], (now, rate))
    trend = _updated_trend(prev, history, spec, now, rate)
    new_policy = replace(prev, history=history, trend=trend)
    if params.forecaster != TREND:
        bins, model, fitted_at, err = _updated_model(prev, spec, now, rate)
        new_policy = replace(new_policy, bins=bins, model=model, fitted_at=fitted_at,
                             forecast_error=err)
    fc = forecast_demand(new_policy, spec, now)
    if fc.model.endswith("(fallback)"):
        new_policy = replace(new_policy, forecast_fallbacks=prev.forecast_fallbacks + 1)
    lead_s = _lead_steps(spec) * spec.sync_period_s
    pending, errors = _resolved_errors(prev, history, lead_s, now)
    new_policy = replace(new_policy, pending=(*pending, (now, fc.mean_peak)),
                         lead_errors=errors)
    calibrated = _calibrated_peak(fc.mean_peak, errors, params.headroom_quantile)
    if calibrated is not None:
        # Once enough lead times have been scored, plan on the forecaster's *measured*
        # lead-time error rather than its own interval: the trend's interval grows a
        # one-step residual by sqrt(steps), which knows nothing of bursts, while the
        # measured quantile covers what actually happened by construction.
        fc = replace(fc, quantile_peak=calibrated)

    current = snapshot.current_replicas
    ready = snapshot.ready_replicas
    capacity = spec.capacity.requests_per_second
    per_replica = capacity * params.target_utilization
    planned = max(fc.quantile_peak, rate)
    needed = replicas_for_rate(planned, per_replica)
    rec = needed
    reason = Reason.FORECAST
    q_label = f"p{params.headroom_quantile * 100:g}"
    notes: list[str] = []

    queue = snapshot.get(Signal.QUEUE_DEPTH, now, spec.max_metric_age_s)
    if queue is not None and queue > 0:
        # Worked number: 120 waiting at 4 req/s per replica, drained within 30 s, needs
        # ceil(120 / (4 x 30)) = 1 extra replica; 121 waiting need 2.
        extra = math.ceil(queue / (capacity * params.backlog_drain_s) - _EPS)
        if extra > 0:
            rec += extra
            reason = Reason.BACKLOG_DRAIN
            notes.append(f"{queue:.0f} queued need {extra} more to drain within "
                         f"{params.backlog_drain_s:g} s")

    ttft, ttft_label = _ttft_slip(snapshot, spec, now)
    objective = _live_objective(snapshot, spec, now)
    if ttft is not None and ttft > objective:
        floor = max(current, ready + 1)
        if floor > rec:
            rec = floor
            reason = Reason.SLO_CORRECTION
        notes.append(f"TTFT {ttft_label} {ttft:.2f} s is above the {objective:.3g} s "
                     "SLO: no scale-down")

    missing = [name for name, value in (("queue depth", queue), ("TTFT", ttft))
               if value is None]
    if missing and rec < current:
        rec = current
        reason = Reason.METRICS_MISSING
        notes.append(f"{' and '.join(missing)} missing: scale up only")

    down_cutoff = now - params.scale_down_window_s
    recent = (*(r for r in prev.recent if down_cutoff < r[0] < now), (now, rec))
    held = max(r for _, r in recent)
    if held > rec:
        notes.append(f"holding {held} (highest in the last {params.scale_down_window_s:g} s)")
        reason = Reason.FORECAST_HOLD

    outcome = apply_behavior(held, current=current, state=state, spec=spec, now=now)
    replicas, bound = clamp(outcome.replicas, spec)
    if bound is not None and replicas != outcome.replicas:
        reason = bound
    elif outcome.reason is not None:
        reason = outcome.reason
        notes.append(outcome.message)

    message = (f"forecast {fc.mean_peak:.1f} req/s ({q_label} {fc.quantile_peak:.1f}) over the "
               f"next {lead_s:.0f} s, {rate:.1f} req/s now, needs "
               f"{needed} replicas at {per_replica:.1f} req/s each")
    if fc.model != TREND:
        err_note = (f", recent 1-min error {new_policy.forecast_error:.1f} req/s"
                    if math.isfinite(new_policy.forecast_error) else "")
        message += f" (model {fc.model}{err_note})"
    if notes:
        message += "; " + "; ".join(notes)
    new_policy = replace(new_policy, recent=recent)
    new_state = replace(outcome.state, policy=new_policy)
    return (
        Decision(replicas=replicas, reason=reason, message=message, recommendation=held,
                 forecast_rps=planned, demand_rps=rate, forecast_model=fc.model),
        new_state,
    )

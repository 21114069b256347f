"""What every subcommand shares, written once: number and list parsing with the allowed
range in the message, trace/profile loading, JSON to a file or stdout, progress, and the
one-line error report.

This module is imported by ``build_parser()``: it must stay light (no numpy, no client
libraries). Heavy imports go inside the functions that need them.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from autoscaler.errors import AutoscalerError, SpecError, TransientError

if TYPE_CHECKING:
    from autoscaler.config import SpecDocument
    from autoscaler.core.spec import Capacity, PolicyKind, Spec
    from autoscaler.replaying import ReplayOptions
    from autoscaler.sim.profiles import ReplicaProfile
    from autoscaler.traces.model import Trace

EXIT_OK = 0
EXIT_TRANSIENT = 1
"""Something outside us failed (Prometheus unreachable, an API timeout): retrying may help."""
EXIT_SPEC = 2
"""The input is wrong (an option, a file, a spec): retrying will not help."""
EXIT_INTERRUPTED = 130

TRACE_FORMATS = ("azure", "mooncake", "counts", "servegen", "csv")
MAX_MESSAGE_CHARS = 600
"""An error line longer than this is cut (a 10-MB bad value must not flood the terminal)."""


# --- one-line errors ----------------------------------------------------------------------

def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Newlines folded and the length bounded, so an error is always one readable line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 15] + " ...(truncated)"


def report_error(command: str, exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr and return its exit code (2 spec, 1 transient)."""
    code = EXIT_TRANSIENT if isinstance(exc, TransientError) else EXIT_SPEC
    print(one_line(f"autoscaler {command}: error: {exc}"), file=sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, and where to look), exit 2."""

    def error(self, message: str) -> NoReturn:
        # "argument --slo-ttft: '-1' is not allowed; ..." -> "--slo-ttft: '-1' is not ..."
        message = message.removeprefix("argument ")
        self.exit(EXIT_SPEC, one_line(f"{self.prog}: error: {message} (see {self.prog} "
                                      "--help)") + "\n")


# --- numbers --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    """An allowed numeric range, stated in words in every error about it.

    ``Range(low=0, low_open=True)`` is "a number > 0"; ``Range(low=1, whole=True)`` is
    "a whole number >= 1"."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    whole: bool = False
    unit: str = ""

    def describe(self) -> str:
        noun = "a whole number" if self.whole else "a number"
        if self.unit:
            noun += f" of {self.unit}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_num(self.high)}")
        return noun + (" " + " and ".join(parts) if parts else "")

    def check(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.whole and value != int(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open
                                     else value <= self.high)

    def parse(self, option: str, text: object) -> float:
        """``text`` as a number in this range, else a ``SpecError`` naming ``option``."""
        if isinstance(text, bool):  # JSON true is not 1
            raise SpecError(option, text, self.describe())
        try:
            value = float(text)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise SpecError(option, text, self.describe()) from None
        if not self.check(value):
            raise SpecError(option, text, self.describe())
        return value

    def parse_int(self, option: str, text: object) -> int:
        return int(self.parse(option, text))


def _num(x: float) -> str:
    """4294967295 stays 4294967295 (not 4.29497e+09); 0.001 stays 0.001."""
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else f"{x:g}"


def number(rng: Range) -> Callable[[str], float]:
    """An argparse ``type=`` for a float in ``rng``."""
    def parse(text: str) -> float:
        try:
            return rng.parse("", text)
        except SpecError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: "
                                             f"{exc.allowed}") from None
    return parse


def whole(rng: Range) -> Callable[[str], int]:
    """An argparse ``type=`` for a whole number in ``rng`` (``rng.whole`` is implied)."""
    rng = Range(rng.low, rng.high, rng.low_open, rng.high_open, True, rng.unit)
    parse_float = number(rng)

    def parse(text: str) -> int:
        return int(parse_float(text))
    return parse


POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE_INT = Range(low=0, whole=True)
SEED = Range(low=0, high=2**32 - 1, whole=True)


_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def seconds(option: str, text: str, allowed: str) -> float:
    """``"90"``, ``"90s"``, ``"15m"``, ``"1.5h"``, ``"2d"`` -> seconds (finite, >= 0)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([smhd]?)\s*", text)
    if m is None:
        raise SpecError(option, text, allowed)
    value = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not math.isfinite(value):
        raise SpecError(option, text, allowed)
    return value


# --- policy lists -------------------------------------------------------------------------

def policy_list(option: str, text: str,
                allowed: Sequence[PolicyKind] | None = None) -> tuple[PolicyKind, ...]:
    """``"hpa, kpa"`` -> (HPA, KPA); an unknown, repeated or empty list is a ``SpecError``
    naming ``option`` and the allowed names."""
    from autoscaler.core.spec import PolicyKind

    kinds = tuple(allowed) if allowed is not None else tuple(PolicyKind)
    words = f"comma-separated names from {', '.join(k.value for k in kinds)}, each once"
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    by_name = {k.value: k for k in kinds}
    if PolicyKind.HINDSIGHT in kinds:
        by_name["oracle"] = PolicyKind.HINDSIGHT  # its old name, still accepted
    if not names:
        raise SpecError(option, text, words)
    for i, n in enumerate(names):
        if n not in by_name or n in names[:i]:  # name the one that is wrong
            raise SpecError(option, n, words)
    return tuple(by_name[n] for n in names)


# --- inputs -------------------------------------------------------------------------------

def add_trace_arguments(p: argparse.ArgumentParser, *, default_help: str = "the embedded "
                        "synthetic workload") -> None:
    p.add_argument("--trace", help=f"trace file or folder (default: {default_help})")
    p.add_argument("--trace-format", choices=TRACE_FORMATS, help="skip auto-detection")


def add_window_arguments(p: argparse.ArgumentParser) -> None:
    """``--start``/``--duration``: replay (or score) only part of a trace."""
    p.add_argument("--start", default=None, metavar="T",
                   help="skip the trace's first T: seconds or a number with a unit s, m, h, "
                   "d, w (e.g. 2d, 6h, 90m; default 0)")
    p.add_argument("--duration", default=None, metavar="T",
                   help="keep only T of the trace from --start (e.g. 14d, 6h; default: to "
                   "the end)")


def load_trace_input(path: str | None, trace_format: str | None, *, seed: int = 0,
                     synthetic_duration_s: float | None = None, rate_scale: float = 1.0,
                     time_scale: float = 1.0, start: str | float | None = None,
                     duration: str | float | None = None) -> Trace:
    """The trace a command runs on: ``path`` (auto-detected unless ``trace_format``), else
    the embedded synthetic workload; scaled; then cut to ``--start``/``--duration``.

    Scaling comes first so that ``--rate-scale`` can draw its independent copies from the
    whole trace: NASA ``--duration 14d --rate-scale 20`` superposes July 1-14 with 19 other
    days of the 58 (a 14-day trace alone could supply only 14). So the window is on the
    scaled time axis (``--time-scale 2 --duration 2h`` is the first two scaled hours).
    Errors name the option: ``--start``, ``--duration``, ``--rate-scale``, ``--time-scale``.
    """
    from autoscaler.traces import default_workload, load_trace, scale_trace
    from autoscaler.traces.window import parse_duration, window_trace

    start_s = 0.0 if start is None else parse_duration("--start", start, allow_zero=True)
    duration_s = None if duration is None else parse_duration("--duration", duration,
                                                               allow_zero=False)
    # A trace ``autoscaler trace export`` wrote (its own JSON format, found by content).
    fleet = False
    if path and trace_format is None and Path(path).is_file():
        from autoscaler.fleetdata.tracefile import is_fleet_trace

        fleet = is_fleet_trace(Path(path))
    if fleet:
        from autoscaler.fleetdata.tracefile import load_trace_file, scale_fleet_trace

        trace = load_trace_file(Path(path or ""))
    elif path:
        trace = load_trace(path, format=trace_format, seed=seed)
    elif synthetic_duration_s is not None:
        trace = default_workload(seed=seed, duration_s=synthetic_duration_s)
    else:
        trace = default_workload(seed=seed)
    if rate_scale != 1.0 or time_scale != 1.0:
        try:
            scale = scale_fleet_trace if fleet else scale_trace
            trace = scale(trace, rate=rate_scale, time=time_scale, seed=seed)
        except SpecError as exc:
            option = {"rate": "--rate-scale", "time": "--time-scale"}.get(exc.field)
            if option is None:
                raise
            raise SpecError(option, exc.value, exc.allowed) from exc
    if start_s or duration_s is not None:
        try:
            trace = window_trace(trace, start_s, duration_s)
        except SpecError as exc:
            raise SpecError("--start/--duration" if "/" in exc.field else "--start",
                            exc.value, exc.allowed) from exc
    return trace


def load_profile_input(name: str) -> ReplicaProfile:
    """A built-in profile name or a profile YAML file (a binary or non-UTF-8 file is one
    line naming it and its line, before the profile loader reads it as text)."""
    from pathlib import Path

    from autoscaler.sim.profiles import builtin_profiles, load_profile

    path = Path(name)
    if name not in builtin_profiles() and path.is_file():
        try:
            with path.open("rb") as fh:
                raw = fh.read(1 << 20)
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise SpecError("--profile", name, "", source=f"{name}:{line}",
                            problem=f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); expected "
                            "a profile YAML file") from exc
        except OSError:
            pass  # the loader names the file and the reason
    return load_profile(name)


def load_spec_input(path: str) -> Spec:
    """A spec file as ``--spec`` and ``validate`` read it: a bare spec, or a whole
    ``InferenceAutoscaler`` checked as the controller checks it."""
    from autoscaler.config import CUSTOM_RESOURCE_KIND, read_spec_file, spec_from_document

    doc = read_spec_file(path)
    if isinstance(doc.data, dict) and doc.data.get("kind") == CUSTOM_RESOURCE_KIND:
        return custom_resource_spec(doc)
    return spec_from_document(doc)


def custom_resource_spec(doc: SpecDocument) -> Spec:
    """The spec of an ``InferenceAutoscaler`` document; every schema error at once, each
    with its line."""
    from pydantic import ValidationError

    from autoscaler.config import validation_error
    from autoscaler.controller.resource import InferenceAutoscalerSpecModel, parse_autoscaler

    data = doc.data
    if not isinstance(data.get("spec"), dict):
        raise SpecError("spec", data.get("spec"), "", source=doc.where(("spec",)),
                        problem="required, but missing (an InferenceAutoscaler needs a spec "
                        "mapping)")
    try:
        InferenceAutoscalerSpecModel.model_validate(data["spec"])
    except ValidationError as exc:
        raise validation_error(exc, doc, ("spec",), InferenceAutoscalerSpecModel,
                               "spec.") from exc
    try:
        return parse_autoscaler(data).spec
    except SpecError as exc:  # a cross-field rule: find the line of the field it names
        loc = tuple(exc.field.split("[")[0].split("."))
        raise SpecError(exc.field, exc.value, exc.allowed, source=doc.where(loc)) from exc


MAX_SECRET_BYTES = 1 << 20
"""Tokens and passwords are short; a larger file is the wrong file."""


def read_text_file(option: str, path: str, limit: int = MAX_SECRET_BYTES) -> str:
    """The UTF-8 text of a small file (a token, a password); one line naming ``option``
    and the file when it is missing, unreadable, too large or binary."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise SpecError(option, path, "", source=path,
                        problem=f"cannot read it ({exc.strerror or exc})") from exc
    if len(raw) > limit:
        raise SpecError(option, path, "", source=path,
                        problem=f"over {limit:,} bytes: not a token or password file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(option, path, "", source=path,
                        problem=f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start})") from exc


# --- the replay's derived inputs ------------------------------------------------------------

def derive_specs(trace: Trace, profile: ReplicaProfile,
                 options: ReplayOptions) -> tuple[Capacity, dict[PolicyKind, Spec]]:
    """One replica's capacity and each policy's spec for this trace, with an error that
    blames the trace (and names the options that scale it) when the trace is what makes
    them impossible: a prompt of 10^12 tokens is not the SLO's fault, nor a count of 10^12
    requests in one second ``maxReplicas``'s."""
    from autoscaler.core.defaults import MAX_REPLICAS_LIMIT
    from autoscaler.replaying import capacity_for, default_specs, peak_rate

    try:
        capacity = capacity_for(trace, profile, options.slo_ttft_s,
                                options.slo_ttft_s_per_prompt_token)
    except SpecError as exc:
        if exc.field != "slo.ttftSeconds":
            raise
        prompt = _prompt_summary(trace)
        raise SpecError(f"trace {trace.name}", None, "", problem=(
            f"an idle {profile.name} replica misses the TTFT SLO of {options.slo_ttft_s:g} s "
            f"on this trace's requests ({prompt}); check the trace's token columns, or "
            f"raise --slo-ttft ({exc.allowed})")) from exc
    try:
        specs = default_specs(trace, profile, capacity, options)
    except SpecError as exc:
        if exc.field != "maxReplicas" or options.max_replicas is not None:
            raise
        peak = peak_rate(trace)
        needs = peak / capacity.requests_per_second
        raise SpecError(f"trace {trace.name}", None, "", problem=(
            f"its peak of {peak:.4g} requests/s needs {needs:.4g} replicas of {profile.name} "
            f"(each holds {capacity.requests_per_second:.4g} requests/s at the SLO); at most "
            f"{MAX_REPLICAS_LIMIT:,} are allowed: check the trace's timestamps and counts, "
            "--rate-scale and --time-scale")) from exc
    return capacity, specs


def _prompt_summary(trace: Trace) -> str:
    tokens = trace.prompt_tokens
    if tokens is not None and len(tokens):
        return f"prompts of {float(tokens.mean()):.4g} tokens on average, up to " \
               f"{float(tokens.max()):.4g}"
    return f"prompts of {trace.token_mix.mean_prompt_tokens:.4g} tokens on average"


# --- outputs ------------------------------------------------------------------------------

def writable_path(option: str, path: str | Path) -> Path:
    """``path`` if its folder exists; else one line naming ``option``. We never create
    folders a user did not ask for (a typo must not leave ``/nonexistent/`` behind)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise AutoscalerError(f"{option} {path}: cannot write: folder {parent} does not exist")
    return p


def output_dir(option: str, path: str | Path, *, create: bool = True) -> Path:
    """A folder for outputs: created if missing, but only inside a folder that exists."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise AutoscalerError(f"{option} {path}: not a folder")
    writable_path(option, p)
    if create:
        try:
            p.mkdir(exist_ok=True)
        except OSError as exc:
            raise AutoscalerError(f"{option} {path}: cannot create: "
                                  f"{exc.strerror or exc}") from exc
    return p


def write_text(option: str, path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` (whose folder must exist); one line on failure."""
    p = writable_path(option, path)
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise AutoscalerError(f"{option} {path}: cannot write: {exc.strerror or exc}") from exc


def write_json(option: str, target: str, doc: Any, *, stdout: IO[str] | None = None) -> None:
    """``doc`` as strict JSON (no NaN or Infinity: they become null) to ``target``, or to
    stdout when ``target`` is ``-``."""
    import json

    text = json.dumps(finite_json(doc), indent=2, allow_nan=False)
    if target == "-":
        print(text, file=stdout or sys.stdout)
    else:
        write_text(option, target, text + "\n")


def finite_json(doc: Any) -> Any:
    """``doc`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite_json(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite_json(v) for v in doc]
    return doc


# --- progress -----------------------------------------------------------------------------

class Progress:
    """A bar on a terminal, plain lines on a pipe (a 12-minute run must not be silent in a
    log), nothing with ``--no-progress``.

    Lines are printed at most every ``min_interval_s`` (plus the first and the last), so a
    1,000-step run writes a few dozen lines, not 1,000."""

    def __init__(self, total: int, desc: str, *, unit: str = "step", enabled: bool = True,
                 stream: IO[str] | None = None, min_interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.start = clock()
        self.last_line = -math.inf
        self.bar: Any = None
        self.enabled = enabled
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream)

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
            return
        now = self.clock()
        if self.done >= self.total or now - self.last_line >= self.min_interval_s:
            self.last_line = now
            extra = f" ({note})" if note else ""
            print(f"{self.desc}: {self.done}/{self.total} {self.unit}s done, "
                  f"{now - self.start:.0f} s{extra}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def note(text: str, *, stream: IO[str] | None = None) -> None:
    """A status line on stderr (the header before a long run), flushed at once."""
    print(text, file=stream or sys.stderr, flush=True)

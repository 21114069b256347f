"""Replica profiles: how fast one replica of a model on given GPUs serves, as data.

A profile is a small YAML file (see ``autoscaler/sim/profiles/*.yaml`` for the built-in
ones, whose comments show where each number comes from). Every number is an assumption of
the right order of magnitude, not a measurement: the simulator compares policies under the
same assumptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from autoscaler.errors import ProfileError

DEFAULT_PROFILE = "llama3-8b-h100"
"""The profile used when none is named."""


@dataclass(frozen=True, slots=True)
class ReplicaProfile:
    """How one replica serves. Units are in each field's name or comment."""

    name: str
    gpus_per_replica: int
    """GPUs one replica occupies (GPU-hours = provisioned seconds x this / 3600)."""
    prefill_tokens_per_s: float
    """Prefill throughput, prompt tokens per second."""
    decode_step_base_s: float
    """Seconds of one decode iteration, fixed part."""
    decode_step_per_seq_s: float
    """Seconds one decode iteration grows per running sequence."""
    max_num_seqs: int
    """Concurrency limit of the running batch (vLLM ``--max-num-seqs``)."""
    kv_cache_tokens: int
    """KV-cache capacity in tokens (prompt + output reserved per running request)."""
    cold_start_s: float
    """Seconds from asking for a replica until it serves, fixed part."""
    cold_start_jitter_s: float = 0.0
    """Extra cold start, uniform in [0, this] seconds."""
    gpu_hour_cost: float | None = None
    """Dollars per GPU-hour, optional."""

    def step_time_s(self, batch: int) -> float:
        """Seconds of one decode iteration for ``batch`` running sequences."""
        return self.decode_step_base_s + self.decode_step_per_seq_s * batch

    def max_batch(self, prompt_tokens: float, output_tokens: float) -> int:
        """The largest running batch for requests of this size: the concurrency limit or
        what the KV cache holds, whichever binds (at least 1)."""
        per_req = max(1.0, prompt_tokens + output_tokens)
        return max(1, min(self.max_num_seqs, int(self.kv_cache_tokens // per_req)))

    def max_throughput_rps(self, prompt_tokens: float, output_tokens: float) -> float:
        """Sustainable requests/s of one replica at full batch for this token mix.

        Prefill stalls decode (our interference assumption, see ``request_engine``), so a
        request costs its prefill time plus its share of decode time at the full batch b:
        1 / (P / prefill_tps + (O - 1) x step_time(b) / b). The first output token comes out
        of the prefill, hence O - 1 decode tokens. Worked example, 8B profile, P=1,000,
        O=200, b=256: 0.05 s + 199 x 0.0387 / 256 = 0.0801 s -> 12.5 req/s.
        """
        b = self.max_batch(prompt_tokens, output_tokens)
        per_req_s = (prompt_tokens / self.prefill_tokens_per_s
                     + max(0.0, output_tokens - 1.0) * self.step_time_s(b) / b)
        return 1.0 / per_req_s


# field -> (kind, lowest, highest); kind "int" needs an integer, "float" any number.
_FIELDS: dict[str, tuple[str, float, float]] = {
    "gpus_per_replica": ("int", 1, 64),
    "prefill_tokens_per_s": ("float", 1.0, 1e8),
    "decode_step_base_s": ("float", 1e-6, 10.0),
    "decode_step_per_seq_s": ("float", 0.0, 1.0),
    "max_num_seqs": ("int", 1, 1_000_000),
    "kv_cache_tokens": ("int", 1, 1e12),
    "cold_start_s": ("float", 0.0, 3600.0),
    "cold_start_jitter_s": ("float", 0.0, 3600.0),
    "gpu_hour_cost": ("float", 0.0, 1e6),
}
_OPTIONAL = {"cold_start_jitter_s", "gpu_hour_cost"}


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with the package, sorted."""
    folder = resources.files("autoscaler.sim").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read(name_or_path: str) -> tuple[str, str]:
    """(source name for messages, YAML text) of a built-in name or a file path."""
    if name_or_path in builtin_profiles():
        folder = resources.files("autoscaler.sim").joinpath("profiles")
        res = folder.joinpath(f"{name_or_path}.yaml")
        return f"{name_or_path}.yaml", res.read_text(encoding="utf-8")
    path = Path(name_or_path)
    try:
        return str(path), path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError("profile", name_or_path,
                           f"a built-in profile ({', '.join(builtin_profiles())}) or a "
                           f"readable YAML file", source=str(path)) from exc


def parse_profile(data: object, source: str) -> ReplicaProfile:
    """Validate a parsed YAML mapping into a profile; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise ProfileError("<document>", type(data).__name__, "a mapping of profile fields",
                           source=source)
    unknown = sorted(set(data) - set(_FIELDS) - {"name"})
    if unknown:
        raise ProfileError(str(unknown[0]), data[unknown[0]],
                           f"one of the fields {', '.join(['name', *_FIELDS])}", source=source)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError("name", name, "a non-empty string", source=source)
    values: dict[str, float | int | None] = {}
    for key, (kind, lo, hi) in _FIELDS.items():
        if key not in data or data[key] is None:
            if key in _OPTIONAL:
                values[key] = None if key == "gpu_hour_cost" else 0.0
                continue
            raise ProfileError(key, None, f"a number >= {lo:g} and <= {hi:g} (required)",
                               source=source)
        v = data[key]
        ok_type = isinstance(v, int) if kind == "int" else isinstance(v, int | float)
        if isinstance(v, bool) or not ok_type or not math.isfinite(v) or not lo <= v <= hi:
            what = "an integer" if kind == "int" else "a number"
            raise ProfileError(key, v, f"{what} >= {lo:g} and <= {hi:g}", source=source)
        values[key] = v
    return ReplicaProfile(
        name=name,
        gpus_per_replica=int(values["gpus_per_replica"] or 0),
        prefill_tokens_per_s=float(values["prefill_tokens_per_s"] or 0.0),
        decode_step_base_s=float(values["decode_step_base_s"] or 0.0),
        decode_step_per_seq_s=float(values["decode_step_per_seq_s"] or 0.0),
        max_num_seqs=int(values["max_num_seqs"] or 0),
        kv_cache_tokens=int(values["kv_cache_tokens"] or 0),
        cold_start_s=float(values["cold_start_s"] or 0.0),
        cold_start_jitter_s=float(values["cold_start_jitter_s"] or 0.0),
        gpu_hour_cost=None if values["gpu_hour_cost"] is None
        else float(values["gpu_hour_cost"]),
    )


def load_profile(name_or_path: str = DEFAULT_PROFILE) -> ReplicaProfile:
    """Load a built-in profile by name (``llama3-8b-h100``) or a YAML file by path.

    Raises ``ProfileError`` naming the file, the field and the allowed range.
    """
    source, text = _read(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError("<document>", str(exc).splitlines()[0], "valid YAML",
                           source=source) from exc
    return parse_profile(data, source)

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
    """How one replica serves: vLLM's scheduler limits and a step-time model.

    Step-time model (one engine iteration, prefill chunks and decodes together, as vLLM's
    V1 scheduler batches them)::

        step_s = step_base_s + step_per_prefill_token_s x prefill_tokens
                             + step_per_decode_seq_s x decode_seqs

    Units are in each field's name or comment.
    """

    name: str
    gpus_per_replica: int
    """GPUs one replica occupies (GPU-hours = provisioned seconds x this / 3600)."""
    step_base_s: float
    """Seconds of any engine step, fixed part (weights read once per step, launch overhead)."""
    step_per_prefill_token_s: float
    """Seconds a step grows per prompt token prefilled in it (1 / prefill tokens per s)."""
    step_per_decode_seq_s: float
    """Seconds a step grows per sequence decoding one token in it."""
    max_num_seqs: int
    """Most requests running at once (vLLM ``--max-num-seqs``)."""
    max_num_batched_tokens: int
    """Token budget of one step, decodes (1 each) and prefill chunks together (vLLM
    ``--max-num-batched-tokens``)."""
    block_size: int
    """Tokens per KV-cache block (vLLM ``--block-size``)."""
    num_gpu_blocks: int
    """KV-cache blocks of the replica (vLLM's ``num_gpu_blocks``)."""
    cold_start_s: float
    """Seconds from asking for a replica until it serves, fixed part."""
    cold_start_jitter_s: float = 0.0
    """Extra cold start, uniform in [0, this] seconds."""
    gpu_hour_cost: float | None = None
    """Dollars per GPU-hour, optional."""

    @property
    def kv_cache_tokens(self) -> int:
        """KV-cache capacity in tokens: ``num_gpu_blocks x block_size``."""
        return self.num_gpu_blocks * self.block_size

    @property
    def prefill_tokens_per_s(self) -> float:
        """Prompt tokens per second of a step that only prefills (ignoring its base)."""
        return 1.0 / self.step_per_prefill_token_s

    def step_time_s(self, batch: int, prefill_tokens: float = 0.0) -> float:
        """Seconds of one step with ``batch`` decoding sequences and ``prefill_tokens``."""
        return (self.step_base_s + self.step_per_decode_seq_s * batch
                + self.step_per_prefill_token_s * prefill_tokens)

    def max_batch(self, prompt_tokens: float, output_tokens: float) -> int:
        """The largest steady decoding batch for requests of this size (at least 1).

        Three limits, whichever binds first:

        * ``max_num_seqs``;
        * the KV cache: a request holds its prompt plus the tokens generated so far,
          on average P + O/2 over its decode, plus half a block of rounding, so
          b <= blocks x block_size / (P + O/2 + block_size/2);
        * the token budget: in steady state each step carries b decode tokens and
          b x P / (O - 1) prompt tokens (the prefill of the requests that replace the
          b / (O - 1) finishing per step), so b <= budget x (O - 1) / (O - 1 + P).

        Worked example, 8B profile, P=1,000, O=200: seqs 256; KV 396,256 / 1,108 = 357;
        budget 8,192 x 199 / 1,199 = 1,359 -> 256.
        """
        p = max(1.0, prompt_tokens)
        o = max(1.0, output_tokens)
        kv = self.kv_cache_tokens / (p + o / 2.0 + self.block_size / 2.0)
        budget = (self.max_num_batched_tokens * (o - 1.0) / (o - 1.0 + p)
                  if o > 1.0 else math.inf)
        return max(1, min(self.max_num_seqs, int(kv), int(min(budget, 1e12))))

    def max_throughput_rps(self, prompt_tokens: float, output_tokens: float) -> float:
        """Sustainable requests/s of one replica at full batch for this token mix.

        Per second the replica runs n steps of b decodes each and prefills lambda x P
        tokens: 1 = n x (base + per_seq x b) + per_token x lambda x P, with
        lambda x (O - 1) = n x b decode tokens (the first output token comes out of the
        prefill). Solved for lambda:
        1 / (P x per_token + (O - 1) x step_time(b) / b). Worked example, 8B profile,
        P=1,000, O=200, b=256: 0.05 s + 199 x 0.03872 / 256 = 0.0801 s -> 12.5 req/s.
        """
        b = self.max_batch(prompt_tokens, output_tokens)
        per_req_s = (max(1.0, prompt_tokens) * self.step_per_prefill_token_s
                     + max(0.0, output_tokens - 1.0) * self.step_time_s(b) / b)
        return 1.0 / per_req_s


# field -> (kind, lowest, highest); kind "int" needs an integer, "float" any number.
_FIELDS: dict[str, tuple[str, float, float]] = {
    "gpus_per_replica": ("int", 1, 64),
    "step_base_s": ("float", 1e-6, 10.0),
    "step_per_prefill_token_s": ("float", 1e-9, 1.0),
    "step_per_decode_seq_s": ("float", 0.0, 1.0),
    "max_num_seqs": ("int", 1, 1_000_000),
    "max_num_batched_tokens": ("int", 1, 10_000_000),
    "block_size": ("int", 1, 4096),
    "num_gpu_blocks": ("int", 1, 1e10),
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
    if values["max_num_batched_tokens"] is not None and values["max_num_seqs"] is not None \
            and values["max_num_batched_tokens"] < values["max_num_seqs"]:
        # vLLM refuses this too (SchedulerConfig.verify_max_model_len): a step must have
        # room for one decode token of every running sequence.
        raise ProfileError("max_num_batched_tokens", values["max_num_batched_tokens"],
                           f"an integer >= max_num_seqs ({values['max_num_seqs']})",
                           source=source)
    return ReplicaProfile(
        name=name,
        gpus_per_replica=int(values["gpus_per_replica"] or 0),
        step_base_s=float(values["step_base_s"] or 0.0),
        step_per_prefill_token_s=float(values["step_per_prefill_token_s"] or 0.0),
        step_per_decode_seq_s=float(values["step_per_decode_seq_s"] or 0.0),
        max_num_seqs=int(values["max_num_seqs"] or 0),
        max_num_batched_tokens=int(values["max_num_batched_tokens"] or 0),
        block_size=int(values["block_size"] or 0),
        num_gpu_blocks=int(values["num_gpu_blocks"] or 0),
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

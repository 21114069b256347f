"""Replica profiles load from YAML, carry vLLM's scheduler parameters with their arithmetic,
and bad ones fail naming the file, the field and the allowed range."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.errors import ProfileError
from autoscaler.sim.profiles import DEFAULT_PROFILE, builtin_profiles, load_profile

GOOD = """\
name: tiny
gpus_per_replica: 2
step_base_s: 0.01
step_per_prefill_token_s: 0.0001
step_per_decode_seq_s: 0.0001
max_num_seqs: 8
max_num_batched_tokens: 512
block_size: 16
num_gpu_blocks: 1250
cold_start_s: 60
"""


def test_builtin_profiles_include_the_8b_and_70b_h100_profiles() -> None:
    names = builtin_profiles()
    assert {"llama3-8b-h100", "llama3-70b-4xh100"} <= set(names)
    assert DEFAULT_PROFILE in names


@pytest.mark.parametrize("name", ["llama3-8b-h100", "llama3-70b-4xh100"])
def test_every_builtin_profile_carries_vllm_scheduler_parameters(name: str) -> None:
    p = load_profile(name)
    assert p.name == name
    assert p.max_num_seqs == 256
    # vLLM's OpenAI-server default on >= 70 GiB GPUs, and its default block size.
    assert (p.max_num_batched_tokens, p.block_size) == (8192, 16)
    assert p.max_num_batched_tokens >= p.max_num_seqs
    assert p.cold_start_s > 0 and p.step_per_prefill_token_s > 0


@pytest.mark.parametrize(
    ("name", "layers", "params", "gpus", "other_bytes"),
    [
        # 8B: 32 layers, 8.03e9 params, one GPU, 4 GB activations/graphs assumed.
        pytest.param("llama3-8b-h100", 32, 8.03e9, 1, 4.0e9, id="8b"),
        # 70B: 80 layers, 70.6e9 params, four GPUs, 4 x 4 GB assumed.
        pytest.param("llama3-70b-4xh100", 80, 70.6e9, 4, 16.0e9, id="70b"),
    ],
)
def test_kv_blocks_match_the_model_dimensions(
        name: str, layers: int, params: float, gpus: int, other_bytes: float) -> None:
    # 2 (K, V) x layers x 8 KV heads x 128 dims x 2 bytes (bf16) per token.
    per_token = 2 * layers * 8 * 128 * 2
    free = gpus * 80e9 * 0.90 - params * 2 - other_bytes
    blocks = free / (per_token * 16)
    p = load_profile(name)
    assert p.num_gpu_blocks == int(blocks)  # rounded down
    assert p.kv_cache_tokens == p.num_gpu_blocks * 16


def test_8b_capacity_and_batch_limits_follow_the_documented_arithmetic() -> None:
    p = load_profile("llama3-8b-h100")
    # P=1,000, O=200: seqs 256, KV 396,256 / (1,000 + 100 + 8) = 357, budget
    # 8,192 x 199 / 1,199 = 1,359 -> 256.
    assert p.max_batch(1000, 200) == 256
    # P=10,000, O=100: KV 396,256 / 10,058 = 39; budget 8,192 x 99 / 10,099 = 80 -> 39.
    assert p.max_batch(10_000, 100) == 39
    # P=100, O=2,000: budget 8,192 x 1,999 / 2,099 = 7,801; KV 396,256 / 1,108 = 357;
    # seqs 256 -> 256.
    assert p.max_batch(100, 2000) == 256
    # 1 / (1,000 x 5e-5 + 199 x (0.008 + 0.00012 x 256) / 256) = 12.485 req/s.
    assert p.max_throughput_rps(1000, 200) == pytest.approx(
        1 / (0.05 + 199 * (0.008 + 0.00012 * 256) / 256))


def test_70b_profile_uses_four_gpus_and_starts_slower_than_8b() -> None:
    big, small = load_profile("llama3-70b-4xh100"), load_profile("llama3-8b-h100")
    assert big.gpus_per_replica == 4
    assert big.cold_start_s > small.cold_start_s


def test_a_profile_loads_from_a_file_path_with_optional_fields_defaulted(
        tmp_path: Path) -> None:
    f = tmp_path / "tiny.yaml"
    f.write_text(GOOD)
    p = load_profile(str(f))
    assert (p.gpus_per_replica, p.max_num_seqs, p.cold_start_jitter_s, p.gpu_hour_cost) == (
        2, 8, 0.0, None)
    assert p.kv_cache_tokens == 20_000  # 1,250 blocks x 16
    # The documented step model: 0.01 + 0.0001 x 4 sequences + 0.0001 x 100 tokens.
    assert p.step_time_s(4, 100) == pytest.approx(0.0204)


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        pytest.param(("max_num_seqs: 8", "max_num_seqs: 0"), "max_num_seqs", ">= 1",
                     id="zero seqs"),
        pytest.param(("max_num_seqs: 8", "max_num_seqs: 2.5"), "max_num_seqs",
                     "an integer", id="fractional seqs"),
        pytest.param(("step_base_s: 0.01", "step_base_s: fast"), "step_base_s", "a number",
                     id="text for a number"),
        pytest.param(("cold_start_s: 60", "cold_start_s: -1"), "cold_start_s", ">= 0",
                     id="negative cold start"),
        pytest.param(("num_gpu_blocks: 1250\n", ""), "num_gpu_blocks", "required",
                     id="missing field"),
        pytest.param(("block_size: 16", "block_size: 0"), "block_size", ">= 1",
                     id="zero block size"),
        pytest.param(("max_num_batched_tokens: 512", "max_num_batched_tokens: 4"),
                     "max_num_batched_tokens", ">= max_num_seqs (8)",
                     id="budget below max_num_seqs"),
        pytest.param(("name: tiny", "name: tiny\ncolour: red"), "colour", "one of the fields",
                     id="unknown field"),
        pytest.param(("step_base_s: 0.01", "decode_step_base_s: 0.01"), "decode_step_base_s",
                     "one of the fields", id="the old field name"),
    ],
)
def test_bad_profile_is_one_line_naming_the_file_the_field_and_the_range(
        tmp_path: Path, change: tuple[str, str], field: str, allowed: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace(*change))
    with pytest.raises(ProfileError) as err:
        load_profile(str(f))
    msg = str(err.value)
    assert err.value.field == field
    assert "\n" not in msg
    assert "bad.yaml" in msg and field in msg and allowed in msg


def test_unparsable_yaml_and_missing_files_are_profile_errors(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"broken\.yaml"):
        load_profile(str(f))
    with pytest.raises(ProfileError, match="no-such-profile"):
        load_profile("no-such-profile")

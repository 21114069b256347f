"""Replica profiles load from YAML, and bad ones fail naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.errors import ProfileError
from autoscaler.sim.profiles import DEFAULT_PROFILE, builtin_profiles, load_profile

GOOD = """\
name: tiny
gpus_per_replica: 2
prefill_tokens_per_s: 10000
decode_step_base_s: 0.01
decode_step_per_seq_s: 0.0001
max_num_seqs: 8
kv_cache_tokens: 20000
cold_start_s: 60
"""


def test_builtin_profiles_include_the_8b_and_70b_h100_profiles() -> None:
    names = builtin_profiles()
    assert {"llama3-8b-h100", "llama3-70b-4xh100"} <= set(names)
    assert DEFAULT_PROFILE in names


@pytest.mark.parametrize("name", ["llama3-8b-h100", "llama3-70b-4xh100"])
def test_every_builtin_profile_loads_and_is_sane(name: str) -> None:
    p = load_profile(name)
    assert p.name == name
    assert p.max_num_seqs == 256  # vLLM's default --max-num-seqs
    assert p.cold_start_s > 0 and p.prefill_tokens_per_s > 0


def test_8b_kv_capacity_matches_the_model_dimensions() -> None:
    # 2 (K,V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token.
    per_token = 2 * 32 * 8 * 128 * 2
    assert per_token == 128 * 1024
    free = 80e9 * 0.90 - 8.03e9 * 2 - 4.0e9
    p = load_profile("llama3-8b-h100")
    assert abs(p.kv_cache_tokens - free / per_token) / (free / per_token) < 0.01


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
    # step time is the documented linear model: 0.01 + 0.0001 x 4
    assert p.step_time_s(4) == pytest.approx(0.0104)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(("max_num_seqs: 8", "max_num_seqs: 0"), "max_num_seqs", id="zero seqs"),
        pytest.param(("max_num_seqs: 8", "max_num_seqs: 2.5"), "max_num_seqs",
                     id="fractional seqs"),
        pytest.param(("prefill_tokens_per_s: 10000", "prefill_tokens_per_s: fast"),
                     "prefill_tokens_per_s", id="text for a number"),
        pytest.param(("cold_start_s: 60", "cold_start_s: -1"), "cold_start_s",
                     id="negative cold start"),
        pytest.param(("kv_cache_tokens: 20000\n", ""), "kv_cache_tokens", id="missing field"),
        pytest.param(("name: tiny", "name: tiny\ncolour: red"), "colour", id="unknown field"),
    ],
)
def test_bad_profile_names_the_file_and_the_field(
        tmp_path: Path, change: tuple[str, str], field: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace(*change))
    with pytest.raises(ProfileError) as err:
        load_profile(str(f))
    assert err.value.field == field
    assert "bad.yaml" in str(err.value)
    assert field in str(err.value)


def test_unparsable_yaml_and_missing_files_are_profile_errors(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"broken\.yaml"):
        load_profile(str(f))
    with pytest.raises(ProfileError, match="no-such-profile"):
        load_profile("no-such-profile")

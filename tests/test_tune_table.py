"""The ``autoscaler tune`` summary table: held-out figures first, hindsight (not "oracle"),
and the ratio to the proven bound."""

from __future__ import annotations

from typing import Any

from autoscaler.cli.tune import format_table


def _doc(hindsight_key: str, vs_key: str) -> dict[str, Any]:
    fig_in = {"gpu_hours": 12.0, "attainment": 0.9991, vs_key: 1.3, "bound_gpu_hours": 8.0,
              "gpu_vs_bound": 1.5, "scale_events": 4}
    fig_out = {"gpu_hours": 6.0, "attainment": 0.985, vs_key: 1.4, "bound_gpu_hours": 5.0,
               "gpu_vs_bound": 1.2, "scale_events": 2}
    return {"settings": {"attainment": 0.99, "slo_ttft_s": 2.0, "holdout": 0.25},
            "trace": {"name": "t"}, "method": "tpe", "budget": 24, "seed": 0,
            hindsight_key: {"in_sample": {"gpu_hours": 9.0, "attainment": 1.0},
                            "held_out": {"gpu_hours": 4.0, "attainment": 1.0}},
            "policies": {"predictive": {"feasible": True, "in_sample": fig_in,
                                        "held_out": fig_out}}}


def test_the_table_leads_with_held_out_figures_and_says_hindsight() -> None:
    text = format_table(_doc("hindsight", "gpu_vs_hindsight"))
    assert "oracle" not in text
    header = next(line for line in text.splitlines() if "held out" in line)
    assert header.index("held out") < header.index("in sample")
    row = next(line for line in text.splitlines() if line.startswith("predictive"))
    # Held out (6.00 GPU-h, 98.50 %, 1.20 of the bound, 1.40 of hindsight) before in sample
    # (12.00, 99.91 %, 1.50, 1.30).
    cells = row.split()
    assert cells[2:6] == ["6.00", "98.50%", "1.20", "1.40"]
    assert cells[6:10] == ["12.00", "99.91%", "1.50", "1.30"]


def test_a_file_written_before_the_rename_still_reads() -> None:
    row = next(line for line in format_table(_doc("oracle", "gpu_vs_oracle")).splitlines()
               if line.startswith("predictive"))
    assert row.split()[5] == "1.40"

"""The closed loop's replay side runs through ``autoscaler replay`` itself: its loop flags
(``--scrape-interval``, ``--rate-window``, ``--actuation-delay``, ``--initial-replicas``,
``--via-hpa``) and the scenario's files give exactly what ``replay()`` gives when called
with the same values. No cluster needed; in this tier because it reads the Azure trace the
closed loop plays (``../shared/traces``)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.e2e.kwok_loop import azure_scenario, replay_api_run, replay_run


@pytest.mark.parametrize(("hpa", "offset"), [(False, 0.0), (True, 0.0), (True, 1.0)],
                         ids=["Scale mode", "Metrics mode, HPA syncs at 0, 2, 4 s",
                              "Metrics mode, HPA syncs at 1, 3, 5 s"])
def test_autoscaler_replay_reproduces_the_api_replay_of_the_scenario(
        hpa: bool, offset: float) -> None:
    sc = dataclasses.replace(azure_scenario(hpa=hpa), hpa_offset_s=offset)
    cli, api = replay_run(sc, seed=3), replay_api_run(sc, seed=3)
    assert cli.replicas == api.replicas
    assert cli.ready == api.ready
    # The trace file keeps 6 decimals of each rate (53.333333 req/s): the fluid engine's
    # figures agree to far better than any tolerance of the comparison.
    assert cli.gpu_hours == pytest.approx(api.gpu_hours, rel=1e-9)
    assert cli.attainment == pytest.approx(api.attainment, abs=1e-6)

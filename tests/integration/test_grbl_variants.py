"""GRBL variants and settings: grblHAL's banner, inch reports ($13=1), motors idling ($1).

Real parts: the GRBL driver and ``rig rail`` over a real pseudo-terminal to the GRBL simulator,
which prints grblHAL's banner (grblHAL core report.c) on request, reports inches with $13=1
(GRBL print.c) and ships GRBL's default $1=25 (defaults.h).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rig.cli.rail import app
from rig.rails.grbl import GrblRail
from rig.sim.grbl import GrblSimulator
from tests.rails import connected

STEP_UM = 1000.0 / 800.0


def test_grblhal_banner_is_recognised_and_its_restart_seen() -> None:
    with GrblSimulator(time_scale=20.0, grblhal=True) as sim, connected(sim, GrblRail) as rail:
        assert (rail.firmware, rail.version) == ("GrblHAL", "1.1f")
        assert "restarted when its port was opened" in (rail.capabilities.unreferenced or "")
        rail.accept_position()
        rail.move_to(1500.0)
        assert abs(rail.position - 1500.0) <= STEP_UM


def test_inch_reports_are_converted() -> None:
    with GrblSimulator(time_scale=20.0, settings={13: 1}) as sim, connected(sim, GrblRail) as rail:
        rail.accept_position()
        rail.move_to(2000.0)
        assert sim.machine_position[0] == pytest.approx(2.0)
        assert abs(rail.position - 2000.0) <= STEP_UM + 1.27
        rail.send("G10 L20 P1 X1")  # work offsets are reported in inches too
        assert abs(rail.position - 1000.0) <= STEP_UM + 1.27


@pytest.mark.slow
def test_motors_idling_between_frames_is_warned_about_and_can_be_fixed() -> None:
    with GrblSimulator(time_scale=20.0) as sim:
        status = CliRunner().invoke(app, ["status", sim.url])
        assert status.exit_code == 0, status.output
        assert "$1 (step idle delay) is 25 ms" in status.output
        assert "rig rail keep-motors-on" in status.output
        fixed = CliRunner().invoke(app, ["keep-motors-on", sim.url])
        assert fixed.exit_code == 0, fixed.output
        assert sim.settings[1] == 255
        with connected(sim, GrblRail) as rail:
            assert rail.setup_warnings() == []


def test_rail_simulate_offers_a_grblhal_board() -> None:
    from rig.cli.rail import _simulator

    device = _simulator("grblhal", 20.0, None)
    assert isinstance(device, GrblSimulator)
    with device, connected(device, GrblRail) as rail:
        assert rail.firmware == "GrblHAL"


def test_a_garbled_setting_line_is_ignored_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``$$`` line whose value is line noise ("250.0.0" still fits the setting's pattern)
    stopped the connection on ValueError; it is ignored, as a line that is no setting is."""
    with GrblSimulator(time_scale=20.0) as sim:
        real = sim._setting_text
        noisy = {100: "$100=250.0.0", 101: "$101=-"}
        monkeypatch.setattr(sim, "_setting_text", lambda key: noisy.get(key) or real(key))
        with connected(sim, GrblRail) as rail:
            assert 100 not in rail.settings and 101 not in rail.settings
            assert 102 in rail.settings

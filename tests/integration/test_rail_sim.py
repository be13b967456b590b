"""The shared rail behaviour through the in-process ``sim://`` rail, URLs and the registry."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rig.errors import MotionError, RigError
from rig.focuser import Focuser
from rig.rails import known_schemes, open_focuser
from rig.rails.base import MoveStoppedError, RailOptions
from rig.rails.url import DeviceURL, URLError
from rig.sim.rail import SimulatedRail


def fast_rail(**options: object) -> SimulatedRail:
    return SimulatedRail(
        RailOptions(**options),  # type: ignore[arg-type]
        speed_mm_s=20.0,
        accel_mm_s2=500.0,
        time_scale=20.0,
    )


def test_sim_url_builds_a_focuser_with_its_options() -> None:
    rail = open_focuser("sim://?speed=3mm/s&backlash=20um&settle=0.2&min=-1mm&max=5mm&step=2um")
    assert isinstance(rail, SimulatedRail)
    assert isinstance(rail, Focuser)
    assert rail.speed_mm_s == pytest.approx(3.0)
    assert rail.step_um == 2.0
    assert rail.options == RailOptions(
        backlash_um=20.0, settle_s=0.2, min_um=-1000.0, max_um=5000.0
    )
    caps = rail.capabilities
    assert (caps.units, caps.can_home, caps.min_position, caps.max_position) == (
        "um",
        True,
        -1000.0,
        5000.0,
    )


def test_keyword_arguments_override_url_options() -> None:
    rail = open_focuser("sim://?backlash=20um&time_scale=2", backlash_um=0.0, time_scale=50.0)
    assert isinstance(rail, SimulatedRail)
    assert rail.options.backlash_um == 0.0
    assert rail.time_scale == 50.0


def test_moves_take_realistic_time() -> None:
    rail = open_focuser("sim://?speed=10mm/s&accel=1000mm/s2")
    began = time.monotonic()
    rail.move_to(2000.0)  # 2 mm at 10 mm/s: about 0.2 s
    took = time.monotonic() - began
    assert rail.position == 2000.0
    assert took >= 0.2  # 2 mm at 10 mm/s plus acceleration: never faster than physics


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(URLError) as info:
        open_focuser("ftp://rail")
    message = str(info.value)
    assert "ftp://" in message and "\n" not in message
    for scheme in ("grbl://", "marlin://", "sim://", "camera://"):
        assert scheme in message


def test_registry_comes_from_entry_points() -> None:
    assert {"grbl", "marlin", "sim", "camera"} <= set(known_schemes())


def test_url_typos_are_refused() -> None:
    with pytest.raises(URLError, match=r"unknown option backlsh.*understands:.*backlash"):
        open_focuser("sim://?backlsh=20um")
    with pytest.raises(URLError, match="not a focuser URL"):
        open_focuser("/dev/ttyUSB0")
    with pytest.raises(RigError, match="no unit"):  # a bare number
        open_focuser("sim://?backlash=50")
    # Each names its option and the URL ("cannot read 'abc' as a length" named neither).
    for url, expected in (
        ("sim://?backlash=abc", r"option backlash=abc in 'sim://\?backlash=abc': cannot read"),
        ("sim://?settle=-1", r"option settle=-1 in .*: duration '-1' must not be negative"),
        ("sim://?settle=1e9", r"option settle=1e9 in .*: at most an hour"),
        ("grbl:///dev/stackrig-no-such-port?wakeup=soon", r"option wakeup=soon in "),
    ):
        with pytest.raises(URLError, match=expected):
            open_focuser(url)


def test_gcode_rail_settings_out_of_range_are_refused_before_the_port_opens() -> None:
    """Poll, timeout and baud out of range, and numbers that are not finite, are one-line
    errors naming the value: never a traceback, never pyserial's cable advice."""
    for url, expected in (
        ("grbl:///dev/stackrig-no-such-port?poll=0", "poll=0s for /dev/stackrig-no-such-port"),
        ("marlin:///dev/stackrig-no-such-port?poll=5s", "poll=5s"),
        ("grbl:///dev/stackrig-no-such-port?timeout=0", "timeout=0s"),
        ("grbl:///dev/stackrig-no-such-port?baud=-5", "baud=-5 for /dev/stackrig-no-such-port"),
        ("marlin:///dev/stackrig-no-such-port?baud=nan", "baud='nan'.*must be a number"),
        ("grbl:///dev/stackrig-no-such-port?baud=inf", "baud='inf'.*must be a number"),
        ("grbl:///dev/stackrig-no-such-port?baud=1152.5", "baud=1152.5.*whole number"),
        ("sim://?time_scale=nan", "time_scale='nan'.*must be a number"),
    ):
        with pytest.raises(URLError, match=expected) as info:
            open_focuser(url)
        assert "\n" not in str(info.value)


def test_device_url_parsing() -> None:
    url = DeviceURL.parse("grbl:///dev/ttyUSB0?baud=115200&axis=X&backlash=50um&settle=0.5")
    assert (url.scheme, url.path) == ("grbl", "/dev/ttyUSB0")
    assert url.options == {"baud": "115200", "axis": "X", "backlash": "50um", "settle": "0.5"}
    assert DeviceURL.parse("sim://").path == ""
    assert DeviceURL.parse("grbl://spy:///dev/ttyUSB0").path == "spy:///dev/ttyUSB0"
    with pytest.raises(URLError, match="given twice"):
        DeviceURL.parse("sim://?speed=1mm/s&speed=2mm/s")


def test_soft_limits_refuse_before_any_motion() -> None:
    rail = fast_rail(min_um=0.0, max_um=1000.0, backlash_um=50.0)
    with pytest.raises(MotionError, match=r"outside the soft limits 0 µm .. 1 mm; nothing moved"):
        rail.move_to(1500.0)
    with pytest.raises(MotionError):
        rail.move_by(-1.0)
    assert rail.moves == []
    assert rail.position == 0.0


@pytest.mark.parametrize("approach", ["below", "above"])
def test_every_target_is_approached_from_the_same_side(approach: str) -> None:
    rail = fast_rail(backlash_um=50.0, approach=approach)
    sign = 1 if approach == "below" else -1
    for target in [500.0, 300.0, 300.0, 800.0, 790.0, -200.0, 100.0]:
        before = len(rail.moves)
        rail.move_to(target)
        assert rail.position == target
        new = rail.moves[before:]
        if new:  # the final motion onto the target runs in the approach direction
            assert new[-1].end == target
            assert new[-1].direction == sign
        # a move against the approach direction overshoots by exactly the backlash
        for motion in new[:-1]:
            assert motion.end == pytest.approx(target - sign * 50.0)


def test_overshoot_is_clamped_to_soft_limits() -> None:
    rail = fast_rail(backlash_um=50.0, min_um=0.0, max_um=1000.0)
    rail.move_to(500.0)
    rail.move_to(20.0)
    assert [m.end for m in rail.moves[-2:]] == [0.0, 20.0]


def test_the_soft_limits_are_exact() -> None:
    rail = fast_rail(min_um=0.0, max_um=1000.0)
    rail.move_to(1000.0)
    for beyond in (1000.5, -0.5):
        with pytest.raises(MotionError, match="outside the soft limits"):
            rail.move_to(beyond)
    rail.move_to(0.0)
    assert [m.end for m in rail.moves] == [1000.0, 0.0]


def test_a_fresh_rail_takes_up_the_slack_unless_the_move_does_it() -> None:
    """Where the gears' slack sits is unknown until the rail has moved: a short first move in
    the approach direction may be all slack, so it goes back by the backlash first; one at
    least the backlash long takes the slack up by itself, as does every later move that way."""
    rail = fast_rail(backlash_um=50.0)
    rail.move_to(10.0)
    rail.move_to(20.0)
    assert [m.end for m in rail.moves] == [-40.0, 10.0, 20.0]
    long_first = fast_rail(backlash_um=50.0)
    long_first.move_to(50.0)
    assert [m.end for m in long_first.moves] == [50.0]


def test_no_backlash_means_straight_moves() -> None:
    rail = fast_rail()
    rail.move_to(500.0)
    rail.move_to(100.0)
    assert [(m.start, m.end) for m in rail.moves] == [(0.0, 500.0), (500.0, 100.0)]


@pytest.mark.slow
def test_settle_delay_is_waited_after_motion() -> None:
    rail = fast_rail(settle_s=0.3)
    began = time.monotonic()
    rail.move_to(10.0)
    assert time.monotonic() - began >= 0.3


@pytest.mark.slow
def test_stop_from_another_thread_halts_a_long_move() -> None:
    rail = SimulatedRail(speed_mm_s=1.0, accel_mm_s2=50.0)
    stopped = threading.Event()

    def stop_once_under_way() -> None:
        # On a state, not after a delay: a stop before the move starts is cleared by the move,
        # and a fixed delay on a loaded machine may land anywhere in it.
        deadline = time.monotonic() + 10.0
        while rail.position < 200.0 and time.monotonic() < deadline:
            time.sleep(0.001)
        rail.stop()
        stopped.set()

    threading.Thread(target=stop_once_under_way, daemon=True).start()
    with pytest.raises(MoveStoppedError, match="stopped at"):
        rail.move_to(50_000.0)  # 50 s at full speed
    assert stopped.wait(10.0)
    stopped_at = rail.position
    assert 200.0 <= stopped_at < 5000.0  # well short of the 50 mm target (4.8 s more travel)
    time.sleep(0.1)
    assert rail.position == stopped_at  # really stopped
    rail.move_to(0.0)  # and usable afterwards
    assert rail.position == 0.0


class NotedLock:
    """The rail's move lock, telling when a move starts waiting for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = threading.Event()

    def __enter__(self) -> None:
        self.waiting.set()
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


@pytest.mark.parametrize("motion", ["move", "home"])
def test_a_stop_while_a_move_waits_to_begin_stops_it(motion: str) -> None:
    """A stop that came while the move it was meant for waited for the rail (or read the
    controller's state) was lost as the move began: a jog the station's Stop was pressed for,
    answered "stopped", then ran its whole way. A stop before the move was asked for is not
    its stop (the previous test's rail moves on after one)."""
    rail = fast_rail()
    rail.move_to(1000.0)
    noted = NotedLock()
    rail._move_lock = noted  # type: ignore[assignment]
    failed: list[BaseException] = []

    def run() -> None:
        try:
            rail.move_to(3000.0) if motion == "move" else rail.home()
        except BaseException as exc:
            failed.append(exc)

    with noted.lock:  # the rail is busy: the move waits
        mover = threading.Thread(target=run)
        mover.start()
        assert noted.waiting.wait(10.0)
        rail.stop()
    mover.join(30.0)
    assert [type(exc) for exc in failed] == [MoveStoppedError], failed
    assert "stopped before it began" in str(failed[0])
    assert rail.position == 1000.0
    rail.move_to(2000.0)  # asked for after the stop: it moves
    assert rail.position == 2000.0


def test_a_stop_while_a_leg_is_journalled_stops_before_it_moves() -> None:
    """A session journals each leg of a move with backlash before the rail is told (a write and
    an fsync): a stop that came meanwhile, after the rail had looked for one, was cleared as
    the leg began, and the whole overshoot leg ran."""
    rail = fast_rail(backlash_um=200.0)  # from above: overshoot to 800, then up to 1000
    rail.move_to(2000.0)
    legs: list[float] = []

    def journal(waypoint: float) -> None:
        legs.append(waypoint)
        rail.stop()

    rail.on_leg = journal
    with pytest.raises(MoveStoppedError):
        rail.move_to(1000.0)
    assert legs == [800.0] and rail.position == 2000.0


def test_home_goes_to_the_home_position() -> None:
    rail = open_focuser("sim://?position=3mm&home=1mm&time_scale=50")
    assert rail.position == 3000.0
    rail.home()
    assert rail.position == 1000.0


def test_step_resolution_quantises_positions() -> None:
    rail = open_focuser("sim://?step=5um&time_scale=50")
    rail.move_to(12.0)
    assert rail.position == 10.0


def test_a_third_party_driver_plugs_in_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real installed-distribution layout on sys.path: importlib.metadata finds it as it
    # would find any pip-installed package declaring a stackrig.focusers entry point.
    (tmp_path / "acme_rail.py").write_text(
        "from rig.sim.rail import SimulatedRail\n"
        "class AcmeRail(SimulatedRail):\n"
        "    @classmethod\n"
        "    def from_url(cls, url, **kwargs):\n"
        "        return cls(name=url, time_scale=50.0)\n"
    )
    info = tmp_path / "acme_rail-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rail\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[stackrig.focusers]\nacme = acme_rail:AcmeRail\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "acme" in known_schemes()
    rail = open_focuser("acme://bench-rail")
    assert type(rail).__name__ == "AcmeRail" and rail.name == "acme://bench-rail"
    rail.move_to(100.0)
    assert rail.position == 100.0

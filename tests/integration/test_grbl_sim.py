"""The GRBL simulator itself, spoken to byte by byte through pyserial on its pseudo-terminal.

These pin down the GRBL 1.1 behaviour the driver relies on (and that users of
``rig rail simulate`` see), independently of the driver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import serial

from rig.sim.grbl import GrblSimulator
from rig.sim.motion import Trapezoid


class Client:
    """A bare GRBL host: write bytes, read lines."""

    def __init__(self, path: str) -> None:
        # The timeout only bounds a hang: no check here relies on it expiring.
        self.port = serial.serial_for_url(path, baudrate=115200, timeout=10.0)

    def line(self) -> str:
        raw = self.port.readline()
        assert raw.endswith(b"\n"), f"timed out, got {raw!r}"
        return raw.decode().strip()

    def lines_until_ok(self, command: str) -> list[str]:
        self.port.write(command.encode() + b"\n")
        out: list[str] = []
        while True:
            text = self.line()
            if text == "ok" or text.startswith("error:"):
                return [*out, text]
            if text:
                out.append(text)

    def silent(self, seconds: float = 0.3) -> bool:
        """Whether the board sends nothing for ``seconds`` (wall clock)."""
        self.port.timeout = seconds
        try:
            return self.port.readline() == b""
        finally:
            self.port.timeout = 10.0

    def skip_to_banner(self) -> None:
        """Read past whatever comes before the board's banner (a restart prints one)."""
        while self.line() != "Grbl 1.1h ['$' for help]":
            pass

    def status(self) -> str:
        self.port.write(b"?")
        while True:
            text = self.line()
            if text.startswith("<"):
                return text

    def wait_idle(self, timeout: float = 30.0) -> str:
        return self.wait_for("<Idle", timeout)

    def wait_for(self, report_start: str, timeout: float = 30.0) -> str:
        """Poll the status until a report starts with ``report_start``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.status()
            if report.startswith(report_start):
                return report
            time.sleep(0.01)
        raise AssertionError(f"never {report_start[1:]}")


@pytest.fixture
def sim() -> Iterator[GrblSimulator]:
    with GrblSimulator(time_scale=10.0) as simulator:
        yield simulator


class Clock:
    """``sim``'s clock, which a test can stop in the middle of a move.

    A byte the host must get to the board while it moves (``?``, ``!``, Ctrl-X, ``0x85``) then
    cannot arrive after the move's end, however late a loaded machine runs the host: after
    :meth:`stop_in_next_move` the board's time stands still ``after`` simulated seconds into the
    next motion it queues, until :meth:`release`. The board is otherwise unchanged: it reads
    and answers as ever, its moves last as long in simulated time. Release only once the board
    answered something sent after the byte: then it has acted on it.
    """

    def __init__(self, sim: GrblSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sim = sim
        self._wall = sim._now
        self._lag = 0.0  # simulated seconds the clock stood still
        self._after: float | None = None
        self._stop_at: float | None = None
        queue = sim._queue

        def queue_then_stop(block: Any, state: str, now: float) -> None:
            queue(block, state, now)
            if self._after is not None:
                self._stop_at, self._after = now + self._after, None

        monkeypatch.setattr(sim, "_now", self.now)
        monkeypatch.setattr(sim, "_queue", queue_then_stop)

    def now(self) -> float:
        t = self._wall() - self._lag
        return t if self._stop_at is None else min(t, self._stop_at)

    def stop_in_next_move(self, after: float) -> None:
        with self.sim._lock:
            self._after = after

    def release(self) -> None:
        with self.sim._wake:
            if self._stop_at is not None:
                self._lag = max(self._lag, self._wall() - self._stop_at)
                self._stop_at = None
            self.sim._wake.notify_all()

    @property
    def stood_still(self) -> float:
        """Wall-clock seconds for which the board's time stood still."""
        return self._lag / self.sim.time_scale


@pytest.fixture
def clock(sim: GrblSimulator, monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(sim, monkeypatch)


def opened(sim: GrblSimulator) -> Client:
    """A host that opened the port and read up to the banner (the board restarts on open)."""
    host = Client(sim.path)
    host.skip_to_banner()
    return host


@pytest.fixture
def client(sim: GrblSimulator) -> Iterator[Client]:
    """A host on an unlocked board: homing is on, so it booted locked and the host sent $X."""
    host = opened(sim)
    assert host.line() == "[MSG:'$H'|'$X' to unlock]"
    assert host.lines_until_ok("$X") == ["[MSG:Caution: Unlocked]", "ok"]
    yield host
    host.port.close()


def test_a_board_with_homing_boots_locked_until_x_or_h(sim: GrblSimulator) -> None:
    host = opened(sim)
    try:
        assert host.line() == "[MSG:'$H'|'$X' to unlock]"
        assert host.status().startswith("<Alarm|MPos:0.000,0.000,0.000|")
        assert host.lines_until_ok("G1 X1 F100") == ["error:9"]  # G-code locked out
        assert host.lines_until_ok("G10 L20 P1 X0") == ["error:9"]
        assert host.lines_until_ok("$J=G91 X1 F100") == ["error:8"]  # jogs: Idle only
        assert "$22=1" in host.lines_until_ok("$$")  # settings, state and info still answer
        assert host.lines_until_ok("$G")[-1] == "ok"
        assert host.lines_until_ok("$#")[0] == "[G54:0.000,0.000,0.000]"
        assert host.lines_until_ok("$I")[-1] == "ok"
        assert host.lines_until_ok("$N") == ["$N0=", "$N1=", "ok"]
        assert host.lines_until_ok("$110=500") == ["ok"]
        assert sim.alarms == []  # the lock prints no ALARM:N
        host.port.write(b"\x18")  # a soft reset keeps the lock
        assert host.line() == ""
        assert host.line() == "Grbl 1.1h ['$' for help]"
        assert host.line() == "[MSG:'$H'|'$X' to unlock]"
        assert host.lines_until_ok("$X") == ["[MSG:Caution: Unlocked]", "ok"]
        assert host.status().startswith("<Idle|")
        assert host.lines_until_ok("$X") == ["ok"]  # no alarm: no effect
        assert host.lines_until_ok("G1 X-1 F600") == ["ok"]
    finally:
        host.port.close()
    again = opened(sim)  # opening the port again restarts the board: locked again
    try:
        assert again.line() == "[MSG:'$H'|'$X' to unlock]"
        assert again.status().startswith("<Alarm|")
    finally:
        again.port.close()


@pytest.mark.parametrize(
    ("options", "why"),
    [({"settings": {22: 0}}, "homing disabled"), ({"homing_init_lock": False}, "no lock")],
)
def test_no_lock_without_homing_or_on_a_build_without_the_option(
    options: dict[str, object], why: str
) -> None:
    """GRBL built without HOMING_INIT_LOCK, or with $22=0, boots Idle."""
    with GrblSimulator(time_scale=10.0, **options) as simulator:  # type: ignore[arg-type]
        host = opened(simulator)
        try:
            assert host.status().startswith("<Idle|"), why
            assert host.lines_until_ok("G1 X-1 F600") == ["ok"], why
        finally:
            host.port.close()


def test_homing_from_the_lock_unlocks(sim: GrblSimulator) -> None:
    host = opened(sim)
    try:
        assert host.line() == "[MSG:'$H'|'$X' to unlock]"
        assert host.lines_until_ok("$25=5000") == ["ok"]  # quick seek
        assert host.lines_until_ok("$24=1000") == ["ok"]
        assert host.lines_until_ok("$H") == ["ok"]
        assert host.status().startswith("<Idle|MPos:-1.000,-1.000,-1.000|")
    finally:
        host.port.close()


def test_single_axis_homing_is_refused_by_a_stock_build_and_leaves_it_in_home(
    sim: GrblSimulator,
) -> None:
    """system.c sets the state to Home before it finds $HX unknown (HOMING_SINGLE_AXIS_COMMANDS
    is off in stock config.h): nothing homes and nothing starts until a soft reset, which is a
    reset during homing (mc_reset: ALARM:6)."""
    host = opened(sim)
    try:
        assert host.line() == "[MSG:'$H'|'$X' to unlock]"
        assert host.lines_until_ok("$X") == ["[MSG:Caution: Unlocked]", "ok"]
        assert host.lines_until_ok("$HX") == ["error:3"]
        assert host.status().startswith("<Home|MPos:0.000,")
        assert host.lines_until_ok("G1 X-1 F600") == ["ok"]  # planned, never started
        assert host.lines_until_ok("$H") == ["error:8"]
        assert host.lines_until_ok("$J=G91 X-1 F600") == ["error:8"]
        host.port.write(b"G4 P0\n")
        assert host.silent(0.3)  # the dwell waits for a motion that never starts
        assert sim.motion_log == [] and sim.state == "Home"
        host.port.write(b"\x18")
        assert host.line() == "ALARM:6"
        host.skip_to_banner()
        assert host.line() == "[MSG:'$H'|'$X' to unlock]"
        assert host.status().startswith("<Alarm|MPos:0.000,")  # the position is kept
    finally:
        host.port.close()


def test_a_build_with_single_axis_homing_homes_one_axis() -> None:
    settings = {24: 1000.0, 25: 5000.0}
    with GrblSimulator(time_scale=10.0, settings=settings, single_axis_homing=True) as sim:
        host = opened(sim)
        try:
            host.line()
            assert host.lines_until_ok("$HX") == ["ok"]
            assert host.status().startswith("<Idle|MPos:-1.000,0.000,0.000|")
            assert host.lines_until_ok("$HXY") == ["error:3"]  # one letter only: Home again
            assert host.status().startswith("<Home|")
        finally:
            host.port.close()


@pytest.mark.slow
def test_status_is_not_answered_during_a_homing_cycle(sim: GrblSimulator) -> None:
    """limits.c runs no protocol_execute_realtime() while homing: a ? is served once the cycle
    ends (mc_homing_cycle, state still Home), and a reset during the cycle drops it."""
    host = opened(sim)
    try:
        host.line()
        assert host.lines_until_ok("$25=300") == ["ok"]  # 50 mm at 300 mm/min: 10 s, 1 s real
        host.port.write(b"$H\n")
        while sim.state != "Home":
            time.sleep(0.005)
        host.port.write(b"?")
        assert host.silent(0.3)
        assert sim.unanswered_status_queries == 1
        host.port.write(b"\x18")
        assert host.line() == "ALARM:6"
        host.skip_to_banner()
        assert host.line() == "[MSG:'$H'|'$X' to unlock]"
        assert host.silent(0.2)  # the flagged report died with the reset
        assert host.lines_until_ok("$25=5000") == ["ok"]
        assert host.lines_until_ok("$24=1000") == ["ok"]
        host.port.write(b"$H\n")
        while sim.state != "Home":
            time.sleep(0.005)
        host.port.write(b"?")
        assert host.line().startswith("<Home|MPos:-1.000,-1.000,-1.000|")  # after the cycle
        assert host.line() == "ok"
        assert sim.unanswered_status_queries == 2
    finally:
        host.port.close()


def test_status_settings_and_parser_state(client: Client) -> None:
    assert client.status() == ("<Idle|MPos:0.000,0.000,0.000|FS:0,0|WCO:0.000,0.000,0.000>")
    settings = client.lines_until_ok("$$")
    assert "$22=1" in settings and "$110=600.000" in settings and settings[-1] == "ok"
    assert client.lines_until_ok("$G")[0].startswith("[GC:G0 G54 G17 G21 G90 G94")
    assert client.lines_until_ok("$I")[:2] == ["[VER:1.1h.20190830:]", "[OPT:V,15,128]"]
    assert client.lines_until_ok("$110=300") == ["ok"]
    assert "$110=300.000" in client.lines_until_ok("$$")


def test_error_codes(client: Client) -> None:
    assert client.lines_until_ok("G1 X1") == ["error:22"]  # no feed rate yet
    assert client.lines_until_ok("G5 X1") == ["error:20"]
    assert client.lines_until_ok("$Q") == ["error:3"]
    assert client.lines_until_ok("X") == ["error:2"]
    assert client.lines_until_ok("$20=1") == ["ok"]  # homing is enabled, so allowed
    assert client.lines_until_ok("G4") == ["error:28"]
    assert client.lines_until_ok("G0 X" + "1" * 90) == ["error:11"]
    assert client.lines_until_ok("") == ["ok"]


def test_a_move_takes_trapezoid_time_and_lands_on_a_step(client: Client, clock: Clock) -> None:
    clock.stop_in_next_move(after=0.1)
    began = time.monotonic()
    assert client.lines_until_ok("G1 X2.0003 F600") == ["ok"]
    assert client.status().startswith("<Run|")
    clock.release()
    assert client.lines_until_ok("G4 P0.01") == ["ok"]  # answered once motion is done
    elapsed = time.monotonic() - began - clock.stood_still
    assert client.status().startswith("<Idle|MPos:2.000,")  # 2.0003 mm rounds to a step
    expected = Trapezoid(2.0003, 10.0, 50.0).duration / 10.0  # 600 mm/min, 50 mm/s², x10
    assert elapsed >= expected


def _x(report: str) -> float:
    """The X of a status report's machine position."""
    return float(report.split("MPos:")[1].split(",")[0])


def test_gcode_during_a_jog_is_locked_out_and_0x85_cancels(
    sim: GrblSimulator, client: Client, clock: Clock
) -> None:
    clock.stop_in_next_move(after=1.0)  # 10 mm in: the jog is under way until the cancel
    assert client.lines_until_ok("$J=G91 X50 F600") == ["ok"]
    assert client.status().startswith("<Jog|")
    assert client.lines_until_ok("G1 X1 F100") == ["error:9"]
    # The cancel comes once the carriage has left 0: on a fast host it could come within the
    # first hundredth of a simulated second, a move that rounds to 0.000 in the report.
    deadline = time.monotonic() + 30
    while _x(client.status()) < 1.0:
        assert time.monotonic() < deadline, "the jog never got under way"
    client.port.write(b"\x85")
    client.status()  # answered after the 0x85 was read
    clock.release()
    x = _x(client.wait_idle())
    assert 1.0 <= x < 50.0
    assert sim.motion_log[-1].kind == "brake"
    assert sim.motion_log[-2].interrupted == "jog cancel"


def test_jog_beyond_soft_limits_is_error_15(client: Client) -> None:
    assert client.lines_until_ok("$20=1") == ["ok"]
    assert client.lines_until_ok("$J=G91 X1 F600") == ["error:15"]  # machine space <= 0
    assert client.status().startswith("<Idle|MPos:0.000,")


def test_g1_beyond_soft_limits_is_alarm_2_until_reset(sim: GrblSimulator, client: Client) -> None:
    assert client.lines_until_ok("$20=1") == ["ok"]
    client.port.write(b"G1 X5 F600\n")
    assert client.line() == "ALARM:2"
    assert client.line() == "[MSG:Reset to continue]"
    client.port.write(b"$X\n")  # ignored until reset
    client.port.write(b"?")  # not answered either: protocol.c loops until EXEC_RESET
    assert client.silent(0.3)
    assert sim.unanswered_status_queries == 1 and sim.state == "Alarm"
    client.port.write(b"\x18")
    lines = [client.line() for _ in range(3)]
    assert "Grbl 1.1h ['$' for help]" in lines
    assert lines[-1] == "[MSG:'$H'|'$X' to unlock]"
    assert client.lines_until_ok("$X") == ["[MSG:Caution: Unlocked]", "ok"]


def test_reset_in_motion_is_alarm_3_and_hold_then_reset_is_not(
    client: Client, clock: Clock
) -> None:
    clock.stop_in_next_move(after=0.5)  # the reset comes mid-move
    client.lines_until_ok("G1 X20 F600")
    client.port.write(b"\x18")
    assert client.line() == "ALARM:3"
    clock.release()
    assert "Grbl 1.1h" in client.line() + client.line()
    assert client.lines_until_ok("$X")[-1] == "ok"
    clock.stop_in_next_move(after=0.5)  # the hold comes mid-move
    client.lines_until_ok("G1 X20 F600")
    client.port.write(b"!")
    assert client.status().startswith("<Hold")
    clock.release()
    client.wait_for("<Hold:0|")  # the deceleration is over
    client.port.write(b"\x18")
    assert client.line() == ""
    assert client.line().startswith("Grbl 1.1h")
    assert client.status().startswith("<Idle|")


def test_feed_hold_and_resume_completes_the_move(client: Client, clock: Clock) -> None:
    clock.stop_in_next_move(after=0.2)  # the hold comes mid-move
    client.lines_until_ok("G1 X3 F600")
    client.port.write(b"!")
    assert client.status().startswith("<Hold")
    clock.release()
    client.wait_for("<Hold:0|")  # GRBL resumes only once the deceleration is over
    client.port.write(b"~")
    client.lines_until_ok("G4 P0")
    assert client.wait_idle().startswith("<Idle|MPos:3.000,")


@pytest.mark.slow
def test_homing_and_hard_limit(sim: GrblSimulator, client: Client) -> None:
    assert client.lines_until_ok("$24=400") == ["ok"]  # quick locate
    assert client.lines_until_ok("$25=3000") == ["ok"]
    assert client.lines_until_ok("$H") == ["ok"]  # returns when homing is done
    assert client.status().startswith("<Idle|MPos:-1.000,")
    client.port.write(b"$J=G53 X5 F600\n")  # beyond the switch (no soft limits): trips it
    assert client.line() == "ok"
    assert client.line() == "ALARM:1"
    assert client.line() == "[MSG:Reset to continue]"
    assert sim.alarms == [1]
    client.port.write(b"?")  # a critical alarm answers nothing until Ctrl-X
    assert client.silent(0.3)
    client.port.write(b"\x18")
    client.skip_to_banner()
    assert client.status().startswith("<Alarm|")


def test_planner_buffer_holds_back_ok_when_full(
    sim: GrblSimulator, client: Client, clock: Clock
) -> None:
    clock.stop_in_next_move(after=0.5)  # the first block lasts until released
    for i in range(15):
        client.port.write(f"G1 X{(i + 1) * 0.5:.1f} F30\n".encode())  # 1 s each (0.1 s real)
    for _ in range(15):
        assert client.line() == "ok"
    client.port.write(b"G1 X10 F600\n")
    client.port.timeout = 0.1
    assert client.port.readline() == b""  # planner full: no ok yet
    client.port.timeout = 10.0
    clock.release()
    assert client.line() == "ok"  # once the first block is done


def test_disconnect_and_replug_keep_the_path(
    sim: GrblSimulator, client: Client, clock: Clock
) -> None:
    clock.stop_in_next_move(after=0.5)  # unplugged mid-move
    client.lines_until_ok("G1 X30 F600")
    sim.disconnect()
    clock.release()
    with pytest.raises(serial.SerialException):
        client.port.read(10)
        client.port.read(10)
    client.port.close()
    sim.replug()
    again = Client(sim.path)
    assert "Grbl 1.1h" in again.line() + again.line()
    assert again.status().startswith("<Alarm|MPos:0.000,")  # the board restarted, locked
    assert sim.motion_log[-1].interrupted == "power"
    again.port.close()


def test_stall_and_garbage(sim: GrblSimulator, client: Client) -> None:
    sim.stall()
    client.port.write(b"?")
    client.port.timeout = 0.1
    assert client.port.readline() == b""
    sim.stall(False)
    client.port.timeout = 2.0
    sim.inject(b"\xffgarbled\r\n")
    assert client.port.readline() == b"\xffgarbled\r\n"


@pytest.mark.parametrize("homing", [1, 0])
def test_a_switch_pressed_at_a_reset_locks_the_board_and_releasing_it_trips(homing: int) -> None:
    """CHECK_LIMITS_AT_INIT (stock config.h; protocol.c): with hard limits on, a switch pressed
    when the board starts means ALARM and 'Check Limits', homing or not. $X unlocks, but the
    pin change as the carriage leaves the switch is a hard limit (limits.c); homing is the way
    off."""
    on_switch = (0.001, -50.0, -50.0)  # where a hard-limit stop left the carriage
    settings = {22: homing, 24: 200.0, 25: 2000.0}
    with GrblSimulator(time_scale=10.0, start_position=on_switch, settings=settings) as sim:
        host = opened(sim)
        assert host.line() == "[MSG:Check Limits]"
        assert host.line() == "[MSG:'$H'|'$X' to unlock]"
        assert host.status().startswith("<Alarm")
        assert host.lines_until_ok("$X") == ["[MSG:Caution: Unlocked]", "ok"]
        assert host.lines_until_ok("G1 X-5 F300") == ["ok"]
        assert host.line() == "ALARM:1"
        assert host.line() == "[MSG:Reset to continue]"
        assert sim.carriage[0] == pytest.approx(0.0, abs=1e-6)  # stopped as the switch released
        host.port.write(b"\x18")  # Ctrl-X: at the switch's edge, released, so no Check Limits
        host.skip_to_banner()
        assert host.line() == "[MSG:'$H'|'$X' to unlock]"
        host.port.close()
    with GrblSimulator(time_scale=10.0, start_position=on_switch, settings=settings) as sim:
        host = opened(sim)
        assert host.line() == "[MSG:Check Limits]"
        host.line()
        if homing:
            assert host.lines_until_ok("$H") == ["ok"]  # hard limits are off while homing
            assert host.status().startswith("<Idle|MPos:-1.000,")
        else:  # $H is error:5; limits.c's advice: hard limits off, move off the switch
            assert host.lines_until_ok("$H") == ["error:5"]
            assert host.lines_until_ok("$21=0") == ["ok"]
            assert host.lines_until_ok("$X") == ["[MSG:Caution: Unlocked]", "ok"]
        assert host.lines_until_ok("G91 G1 X-5 F300") == ["ok"]
        assert host.wait_idle().startswith("<Idle")
        assert sim.carriage[0] == pytest.approx(-6.0 if homing else -4.999, abs=1e-3)  # 5 mm off
        host.port.close()


def test_without_hard_limits_a_pressed_switch_is_not_checked() -> None:
    with GrblSimulator(time_scale=10.0, start_position=(0.001, -50.0, -50.0),
                       settings={21: 0, 22: 0}) as sim:  # fmt: skip
        host = opened(sim)
        assert host.status().startswith("<Idle")
        host.port.close()

"""Lens focus drive: vendor strategies and the camera:// focuser.

No lens motor exists on libgphoto2's virtual camera, so the strategies are tested against
FakeBody, a small widget tree that behaves like libgphoto2's where it matters: a widget is sent
only when marked changed (set_value marks it only if the value differs, like gp_widget_set_value;
sending clears the mark), choices keep libgphoto2's order, and a Nikon-like body answers -113 at
the end of its travel. The camera:// URL is also opened on the real virtual body, which has no
focus drive and must be refused with a pointer to rails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rig.camera import (
    Camera,
    CameraError,
    CameraUnsupportedError,
    FocusEndStopError,
)
from rig.camera.config import WIDGET_RADIO, WIDGET_RANGE, WIDGET_TEXT, WIDGET_TOGGLE
from rig.camera.focus import (
    AbsolutePositionDrive,
    RadioStepDrive,
    SignedRangeDrive,
    SonyStepDrive,
    choose_strategy,
)
from rig.errors import MotionError
from rig.focuser import Focuser
from rig.rails import open_focuser
from rig.rails.base import MoveStoppedError
from rig.rails.lens import LensFocuser
from rig.rails.url import URLError
from rig.session.journal import RailLeft
from rig.sim.camera_quirks import SimWidget
from rig.sim.vcamera import VirtualCameraFolder

CANON_SPANISH = ("Cerca 1", "Cerca 2", "Cerca 3", "Ninguno", "Lejos 1", "Lejos 2", "Lejos 3")


class FakeWidget(SimWidget):
    """The quirk layer's widget, with a way to see (and clear) its changed mark."""

    def take_changed(self) -> bool:
        changed, self.changed = self.changed, False
        return changed


class FakeBody:
    """FocusControls over a dict of widgets; records what reaches the 'camera'."""

    description = "Fake body on usb:009,009"

    def __init__(self, manufacturer: str, *widgets: FakeWidget, travel: float = 1e9) -> None:
        self.manufacturer = manufacturer
        self.widgets = {w.name: w for w in widgets}
        self.sent: list[tuple[str, Any]] = []
        self.ensured: list[tuple[str, Any]] = []
        self.slept: list[float] = []
        self.lens = 0.0
        self.travel = travel

    def widget(self, key: str) -> FakeWidget | None:
        return self.widgets.get(key)

    def send(self, key: str, widget: FakeWidget, *, retry_busy: bool = True) -> None:
        if not widget.take_changed():
            return  # libgphoto2 sends only changed widgets
        value = widget.get_value()
        if isinstance(value, float) and abs(self.lens + value) > self.travel:
            raise CameraError("Camera could not complete operation [-113]", -113)
        if isinstance(value, float):
            self.lens += value
        self.sent.append((key, value))

    def ensure(self, key: str, value: Any) -> None:
        self.ensured.append((key, value))
        self.widgets[key].value = value

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def canon(labels: tuple[str, ...] = CANON_SPANISH) -> FakeBody:
    return FakeBody(
        "Canon Inc.",
        FakeWidget("manualfocusdrive", WIDGET_RADIO, labels[3], labels),
        FakeWidget("viewfinder", WIDGET_TOGGLE, 0),
    )


def nikon(travel: float = 1e9, *, live_view: bool = True) -> FakeBody:
    widgets = [
        FakeWidget("manualfocusdrive", WIDGET_RANGE, 0.0, rng=(-32767.0, 32767.0, 1.0)),
        FakeWidget("autofocus", WIDGET_RADIO, "On", ("On", "Off")),
    ]
    if live_view:
        widgets.append(FakeWidget("viewfinder", WIDGET_TOGGLE, 0))
    return FakeBody("Nikon Corporation", *widgets, travel=travel)


def test_fake_body_drops_an_unchanged_repeat_like_libgphoto2() -> None:
    # The trap the Canon strategy must defeat, shown on the fake itself.
    body = canon()
    w = body.widgets["manualfocusdrive"]
    for _ in range(2):
        w.set_value("Lejos 1")
        body.send("manualfocusdrive", w)
    assert body.sent == [("manualfocusdrive", "Lejos 1")]


def test_canon_steps_by_index_whatever_the_language_and_repeats_each_step() -> None:
    body = canon()
    strategy = choose_strategy(body, settle_s=0.25)
    assert isinstance(strategy, RadioStepDrive) and not strategy.absolute
    strategy.ensure_prepared()
    assert body.ensured == [("viewfinder", 1)]
    assert strategy.drive(3) == 3
    assert body.sent == [("manualfocusdrive", "Lejos 1")] * 3
    assert body.slept == [0.25] * 3  # no "move finished" signal: wait after every step
    body.sent.clear()
    assert strategy.drive(-2) == -2
    assert body.sent == [("manualfocusdrive", "Cerca 1")] * 2


def test_canon_drive_errors_keep_their_kind() -> None:
    """Every error of a Canon drive was said as 'needs live view on and the lens switch at AF',
    a busy or unplugged body too; only a plain refusal is."""
    from rig.camera.errors import CameraBusyError, CameraDisconnectedError

    for error, kind in [
        (CameraBusyError("busy [-110]", -110), CameraBusyError),
        (CameraDisconnectedError("gone [-52]", -52), CameraDisconnectedError),
        (CameraError("refused [-1]", -1), CameraError),
    ]:
        body = canon()
        strategy = choose_strategy(body)
        strategy.ensure_prepared()

        def refuse(key: str, widget: FakeWidget, *, retry_busy: bool = True) -> None:
            raise error  # noqa: B023 - called within this iteration

        body.send = refuse  # type: ignore[method-assign]
        with pytest.raises(kind) as raised:
            strategy.drive(1)
        assert type(raised.value) is kind
        assert ("needs live view" in str(raised.value)) == (kind is CameraError)


def test_canon_larger_step_sizes() -> None:
    body = canon(("Near 1", "Near 2", "Near 3", "None", "Far 1", "Far 2", "Far 3"))
    strategy = choose_strategy(body, size=3)
    strategy.ensure_prepared()
    strategy.ensure_prepared()
    assert body.ensured == [("viewfinder", 1)]
    strategy.drive(-1)
    strategy.drive(1)
    assert body.sent == [("manualfocusdrive", "Near 3"), ("manualfocusdrive", "Far 3")]
    with pytest.raises(CameraError, match="step size 4 is not offered; choose one of 1, 2, 3"):
        choose_strategy(canon(), size=4)


def test_canon_refusal_explains_live_view_and_af_switch() -> None:
    body = canon()

    def refuse(key: str, widget: FakeWidget) -> None:
        raise CameraError("Unspecified error [-1]", -1)

    body.send = refuse  # type: ignore[method-assign]
    with pytest.raises(CameraError, match=r"refused to drive the lens after 0 steps.*live view"):
        choose_strategy(body).drive(1)
    with pytest.raises(CameraError, match="the lens switch at AF"):
        choose_strategy(body).drive(1)


def test_a_refusal_of_another_radio_body_asks_no_canon_lens_switch() -> None:
    """The "lens switch at AF" of an EOS was said to Panasonic and Olympus bodies too."""
    labels = ("Near 2", "Near 1", "None", "Far 1", "Far 2")
    body = FakeBody("Panasonic", FakeWidget("manualfocusdrive", WIDGET_RADIO, "None", labels))

    def refuse(key: str, widget: FakeWidget) -> None:
        raise CameraError("Unspecified error [-1]", -1)

    body.send = refuse  # type: ignore[method-assign]
    with pytest.raises(CameraError) as refused:
        choose_strategy(body).drive(1)
    assert "live view on and a lens the body can drive" in str(refused.value)
    assert "switch at AF" not in str(refused.value)


def test_other_radio_layouts_are_read_from_english_labels_only() -> None:
    labels = ("Near 1", "Near 2", "Far 1", "Far 2")
    body = FakeBody("Panasonic", FakeWidget("manualfocusdrive", WIDGET_RADIO, "", labels))
    strategy = choose_strategy(body, size=2)
    strategy.drive(2)
    assert body.sent == [("manualfocusdrive", "Far 2")] * 2
    translated = FakeBody(
        "Panasonic",
        FakeWidget("manualfocusdrive", WIDGET_RADIO, "", ("Cerca 1", "Cerca 2", "Lejos 1", "x")),
    )
    with pytest.raises(CameraUnsupportedError, match="focus rail"):
        choose_strategy(translated)


@pytest.mark.parametrize("count", [5, 6, 7])
def test_a_fuji_position_shown_as_a_radio_is_written_as_a_number(count: int) -> None:
    """Real Fuji bodies show FocusPosition as a radio of the body's enumeration
    (``cameras/fuji-gfx100-ii.txt``). It was refused at six choices, and at five or seven
    read as Near/Far steps: a step wrote one of those values and the lens jumped there."""
    choices = ("-40", "22177", "528", "528", "54", "3", "9")[:count]
    body = FakeBody("FUJIFILM", FakeWidget("manualfocusdrive", WIDGET_RADIO, "500", choices))
    strategy = choose_strategy(body, size=2)
    assert isinstance(strategy, AbsolutePositionDrive) and strategy.position() == 250
    strategy.drive(1)
    assert body.sent == [("manualfocusdrive", "502")]


def test_numbers_in_another_maker_s_radio_are_not_read_as_steps() -> None:
    choices = ("-40", "22177", "528", "528", "54", "3", "9")
    body = FakeBody("Canon Inc.", FakeWidget("manualfocusdrive", WIDGET_RADIO, "0", choices))
    with pytest.raises(CameraUnsupportedError, match="focus rail"):
        choose_strategy(body)


def test_panasonic_choices_are_read_by_index_in_any_language() -> None:
    """libgphoto2's five Panasonic choices, as its bundled German catalogue translates them."""
    labels = ("Nah 1", "Nah 2", "Keine", "Weit 1", "Weit 2")
    body = FakeBody("Panasonic", FakeWidget("manualfocusdrive", WIDGET_RADIO, "Keine", labels))
    choose_strategy(body, size=2).drive(-2)
    choose_strategy(body).drive(1)
    assert body.sent == [("manualfocusdrive", "Nah 2")] * 2 + [("manualfocusdrive", "Weit 1")]


def test_nikon_signed_steps_live_view_and_autofocus_off() -> None:
    body = nikon()
    strategy = choose_strategy(body)
    assert isinstance(strategy, SignedRangeDrive)
    strategy.ensure_prepared()
    # libgphoto2's autofocus setting is set Off and left so: put back, "On" was written to
    # ~/.gphoto/settings, where the widget's "On" had meant "never set", which is off.
    assert body.ensured == [("viewfinder", 1)]
    assert body.sent == [("autofocus", "Off")]
    body.sent.clear()
    assert strategy.drive(40) == 40
    assert strategy.drive(-15) == -15
    assert body.sent == [("manualfocusdrive", 40.0), ("manualfocusdrive", -15.0)]
    assert body.lens == 25


def test_nikon_end_of_travel_is_an_end_stop_not_a_fault() -> None:
    body = nikon(travel=100)
    strategy = choose_strategy(body)
    strategy.drive(90)
    with pytest.raises(FocusEndStopError, match=r"reached its far end stop after 0 of 20") as err:
        strategy.drive(20)
    assert err.value.steps_done == 0 and isinstance(err.value, MotionError)


def test_nikon_without_live_view_is_refused() -> None:
    with pytest.raises(CameraUnsupportedError, match="needs live view"):
        choose_strategy(nikon(live_view=False)).ensure_prepared()


def test_sony_nudges_once_per_step() -> None:
    body = FakeBody(
        "Sony Corporation", FakeWidget("manualfocus", WIDGET_RANGE, 0.0, rng=(-7, 7, 1))
    )
    strategy = choose_strategy(body, size=2, approximate=True)
    assert isinstance(strategy, SonyStepDrive)
    assert strategy.drive(-3) == -3
    assert body.sent == [("manualfocus", -2.0)] * 3


def test_fuji_position_is_absolute_and_clamped_at_the_ends() -> None:
    body = FakeBody(
        "Fujifilm", FakeWidget("focusposition", WIDGET_RANGE, 100.0, rng=(0.0, 500.0, 1.0))
    )
    strategy = choose_strategy(body)
    assert isinstance(strategy, AbsolutePositionDrive) and strategy.absolute
    assert strategy.position() == 100.0 and strategy.limits() == (0.0, 500.0)
    assert strategy.drive(25) == 25
    assert body.sent == [("focusposition", 125.0)]
    with pytest.raises(FocusEndStopError, match="near end stop at position 0") as err:
        strategy.drive(-200)
    assert err.value.steps_done == -125
    text_body = FakeBody("FUJIFILM", FakeWidget("focusposition", WIDGET_TEXT, "40"))
    choose_strategy(text_body).drive(2)
    assert text_body.sent == [("focusposition", "42")]


def test_body_without_any_drive_points_at_rails() -> None:
    with pytest.raises(CameraUnsupportedError) as err:
        choose_strategy(FakeBody("Olympus", FakeWidget("viewfinder", WIDGET_TOGGLE, 0)))
    assert "cannot drive its lens focus over USB" in str(err.value)
    assert "grbl:///dev/ttyUSB0" in str(err.value)


# ----------------------------------------------------------------------- camera:// focuser


class FakeLensCamera:
    """Stands in for Camera around a FakeBody (no real body has a lens motor here)."""

    def __init__(self, body: FakeBody) -> None:
        self.body = body
        self.info = type("Info", (), {"model": "Canon EOS 80D", "port": "usb:001,007"})()
        self.description = "Canon EOS 80D on usb:001,007"
        self.strategy: Any = None
        self.closed = False
        self.releases = 0
        self.focus_at_release: float | None = None

    def configure_focus(
        self, *, size: int = 1, settle_s: float | None = None, approximate: bool = False
    ) -> None:
        self.strategy = choose_strategy(
            self.body, size=size, settle_s=settle_s, approximate=approximate
        )

    def focus_strategy(self) -> Any:
        return self.strategy

    def focus_drive(self, steps: int) -> int:
        self.strategy.ensure_prepared()
        return int(self.strategy.drive(steps))

    def close(self) -> None:
        self.closed = True


def test_lens_focuser_tracks_steps_and_satisfies_the_focuser_contract() -> None:
    cam = FakeLensCamera(canon())
    lens = LensFocuser.from_url("camera://?model=80D&settle=0.1s", camera=cam)  # type: ignore[arg-type]
    assert isinstance(lens, Focuser)
    caps = lens.capabilities
    assert (caps.absolute, caps.units, caps.can_home) == (False, "steps", False)
    lens.move_by(4)
    lens.move_to(1)
    assert lens.position == 1
    assert cam.body.slept == [0.1] * 7
    with pytest.raises(MotionError, match="whole lens steps"):
        lens.move_by(0.5)
    with pytest.raises(MotionError, match="cannot home"):
        lens.home()
    lens.close()
    assert not cam.closed  # the caller's camera stays open


def test_a_lens_stop_after_the_move_was_asked_for_stops_it_before_it_drives() -> None:
    """As a rail's: the station reads the stop count when its Stop can see the move, and a
    stop counted since (pressed before the lens was told) stops the move instead of being
    cleared by it."""
    cam = FakeLensCamera(canon())
    lens = LensFocuser.from_url("camera://?model=80D", camera=cam)  # type: ignore[arg-type]
    seen = lens.stops
    lens.stop()
    assert lens.stops == seen + 1
    with pytest.raises(MoveStoppedError, match="stopped before it began"):
        lens.move_to(3, stops_seen=seen)
    assert lens.position == 0 and cam.body.slept == []
    lens.move_to(3)  # asked for after the stop: it moves
    assert lens.position == 3


def test_an_absolute_lens_counts_position_and_limits_in_its_steps() -> None:
    """A Fuji focuser at size 5 started at the lens's own position in units (100) and then
    added steps: after a move of 2 steps (10 units) it said 102 with the lens at 110."""
    body = FakeBody(
        "FUJIFILM", FakeWidget("focusposition", WIDGET_RANGE, 100.0, rng=(0.0, 500.0, 1.0))
    )
    lens = LensFocuser(FakeLensCamera(body), size=5)  # type: ignore[arg-type]
    caps = lens.capabilities
    assert lens.position == 20 and (caps.min_position, caps.max_position) == (0, 100)
    lens.move_by(2)
    lens.move_to(30)
    assert body.widgets["focusposition"].value == 150.0 and lens.position == 30


def test_an_absolute_lens_between_two_steps_moves_to_the_nearest() -> None:
    """A Fuji lens focused by hand to 102 units stands at 20.4 steps of 5: every plan
    position (20, 40) was refused as a move by a fraction of a step."""
    body = FakeBody(
        "FUJIFILM", FakeWidget("focusposition", WIDGET_RANGE, 102.0, rng=(0.0, 500.0, 1.0))
    )
    lens = LensFocuser(FakeLensCamera(body), size=5)  # type: ignore[arg-type]
    assert lens.position == pytest.approx(20.4)
    lens.move_to(20)  # the nearest step is where it stands
    assert body.widgets["focusposition"].value == 102.0
    lens.move_to(40)
    assert body.widgets["focusposition"].value == 202.0
    assert lens.position == pytest.approx(40.4)
    with pytest.raises(MotionError, match="whole lens steps"):
        lens.move_by(0.5)  # a jog by a fraction is still refused


@pytest.mark.parametrize(("stands", "target", "lands"), [(102.0, 100, 497.0), (398.0, 0, 3.0)])
def test_an_absolute_lens_between_two_steps_reaches_its_end_without_passing_it(
    stands: float, target: float, lands: float
) -> None:
    """A Fuji lens at 102 units stands at 20.4 steps of 5; the nearest step to its far end (100
    steps, 500 units) lies past it, at 100.4. A plan ending there went for it and failed at its
    last frame with an end stop "after 80 of 80 steps", the lens at 500 and counted at 100.4."""
    body = FakeBody(
        "FUJIFILM", FakeWidget("focusposition", WIDGET_RANGE, stands, rng=(0.0, 500.0, 1.0))
    )
    lens = LensFocuser(FakeLensCamera(body), size=5)  # type: ignore[arg-type]
    lens.move_to(target)
    assert body.widgets["focusposition"].value == lands
    assert lens.position == pytest.approx(lands / 5)


def test_lens_focuser_position_after_an_end_stop() -> None:
    """A Nikon lens runs to its stop before the drive is refused (_put_Nikon_MFDrive waits,
    then reads MfDriveStepEnd): the count was 8, the lens somewhere up to 10. A resume or a
    return to the start counted from 8 and put every later frame off by up to a whole move."""
    cam = FakeLensCamera(nikon(travel=10))
    lens = LensFocuser(cam)  # type: ignore[arg-type]
    lens.accept_position()
    lens.move_by(8)
    assert lens.capabilities.unreferenced is None
    with pytest.raises(FocusEndStopError):
        lens.move_by(5)
    assert lens.position == 8
    assert lens.capabilities.unreferenced is not None


@pytest.mark.parametrize("body", [canon, nikon])
def test_a_drive_refused_part_way_counts_the_steps_it_made(body: Any) -> None:
    """A Canon refusing the 5th of 10 steps (or a Nikon its 5th chunk) had moved the lens 4:
    the focuser still said where the drive began, a fault journaled that place, and a resume
    with --accept-position put every later frame 4 steps off."""
    fake = body()
    sends = fake.send

    def refuses_the_fifth(key: str, widget: FakeWidget, *, retry_busy: bool = True) -> None:
        drives = [k for k, _ in fake.sent if k == "manualfocusdrive"]
        if key == "manualfocusdrive" and len(drives) == 4:
            raise CameraError("Canon manual focus drive 0x1 failed [-1]", -1)
        sends(key, widget, retry_busy=retry_busy)

    fake.send = refuses_the_fifth
    size = 1 if body is canon else 32767  # a Nikon step of one whole drive
    lens = LensFocuser(FakeLensCamera(fake), size=size)  # type: ignore[arg-type]
    lens.accept_position()
    with pytest.raises(CameraError):
        lens.move_by(10)
    assert lens.position == 4
    assert lens.capabilities.unreferenced is None  # the refused step was answered, not taken


def test_lens_focuser_url_options_are_checked() -> None:
    cam = FakeLensCamera(canon())
    with pytest.raises(URLError, match="unknown option speed"):
        LensFocuser.from_url("camera://?speed=3", camera=cam)  # type: ignore[arg-type]
    with pytest.raises(URLError, match="size='0'"):
        LensFocuser.from_url("camera://?size=0", camera=cam)  # type: ignore[arg-type]
    with pytest.raises(URLError, match="another camera"):
        LensFocuser.from_url("camera://?model=D850", camera=cam)  # type: ignore[arg-type]


def test_camera_url_on_the_virtual_body_is_refused_with_a_pointer_to_rails(
    tmp_path: Path,
) -> None:
    VirtualCameraFolder(tmp_path / "card", slot_bytes=8000).activate()
    with pytest.raises(CameraUnsupportedError, match=r"Nikon DSC D750 .*focus rail"):
        LensFocuser.from_url("camera://usb:001,001")
    with pytest.raises(CameraUnsupportedError, match="cannot drive its lens focus"):
        open_focuser("camera://?model=D750")  # through the stackrig.focusers entry point
    # The camera opened for the URL was closed again; a new session opens fine.
    with Camera.open() as cam:
        assert cam.is_open


def test_a_resumed_lens_session_refuses_or_counts_from_the_last_frame() -> None:
    """A lens counts from 0 at every opening: resuming needs the user's word that it is put."""
    from rig.devices import establish_reference

    cam = FakeLensCamera(canon())
    lens = LensFocuser(cam)  # type: ignore[arg-type]
    assert "no absolute scale" in (lens.capabilities.unreferenced or "")
    with pytest.raises(MotionError) as info:
        establish_reference(lens, home=False, accept=False, left=RailLeft(12.0, 5), units="steps")
    message = str(info.value)
    assert "\n" not in message and "frame 5 was shot at 12 steps" in message
    assert "--accept-position" in message
    establish_reference(lens, home=False, accept=True, left=RailLeft(12.0, 5), units="steps")
    assert lens.capabilities.unreferenced is None and lens.position == 12
    lens.move_to(14)  # two steps on from the last frame, not fourteen from wherever
    assert lens.position == 14 and len(cam.body.slept) == 2

    fresh = LensFocuser(FakeLensCamera(canon()))  # type: ignore[arg-type]
    establish_reference(fresh, home=False, accept=True, left=None, units="steps")
    assert fresh.position == 0 and fresh.capabilities.unreferenced is None

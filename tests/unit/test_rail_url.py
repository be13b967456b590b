"""Focuser URLs that urllib cannot split are one-line errors naming the URL."""

from __future__ import annotations

import pytest

from rig.rails import open_focuser
from rig.rails.url import DeviceURL, URLError


@pytest.mark.parametrize("text", ["marlin://[::1", "grbl://]x", "grbl://[/dev/ttyUSB0"])
def test_an_unbalanced_bracket_is_a_url_error_naming_the_url(text: str) -> None:
    # urlsplit raised ValueError("Invalid IPv6 URL"): `rig rail status 'marlin://[::1'` (or
    # `rig shoot --rail ...`) ended in a traceback.
    with pytest.raises(URLError) as caught:
        DeviceURL.parse(text)
    message = str(caught.value)
    assert repr(text) in message and "\n" not in message
    with pytest.raises(URLError):
        open_focuser(text)


@pytest.mark.parametrize("scheme", ["grbl", "marlin", "stackshot", "wemacro"])
def test_a_device_path_after_two_slashes_asks_for_three(scheme: str) -> None:
    """``grbl://dev/ttyUSB0`` (``dev`` read as a host) said ``no serial port dev/ttyUSB0:
    check the cable``, sending the user to a cable that was fine."""
    text = f"{scheme}://dev/ttyUSB0?backlash=50um"
    with pytest.raises(URLError) as caught:
        open_focuser(text)
    assert str(caught.value) == (
        f"{text!r}: a device path takes three slashes after the scheme, "
        f"{scheme}:///dev/ttyUSB0?backlash=50um (with two, 'dev' reads as a host name)"
    )


@pytest.mark.parametrize(
    "host", ["localhost", "LocalHost", "127.0.0.1", "localhost:9600", "me@localhost"]
)
def test_a_local_host_before_a_device_path_is_dropped_from_the_url_offered(host: str) -> None:
    """``grbl://localhost/dev/ttyUSB0`` was offered ``grbl:///localhost/dev/ttyUSB0``, which
    names no port either."""
    text = f"grbl://{host}/dev/ttyUSB0"
    with pytest.raises(URLError) as caught:
        open_focuser(text)
    assert "grbl:///dev/ttyUSB0 (with two" in str(caught.value)


def test_a_port_named_without_a_slash_is_still_opened() -> None:
    """``grbl://COM3`` (Windows) names its port as the host: that is looked for as written."""
    from rig.errors import DeviceNotFoundError

    with pytest.raises(DeviceNotFoundError, match="no serial port COM99"):
        open_focuser("grbl://COM99")


def test_options_added_after_a_second_question_mark_are_told_to_use_an_ampersand() -> None:
    """``rig rail simulate`` prints its URL with ``?wakeup=0``: the README's options appended
    with another ``?`` were read as part of that value ("unknown time unit '?backlash=50um'")."""
    text = "grbl:///tmp/s/ttyGRBL?wakeup=0?backlash=50um&settle=0.5"
    with pytest.raises(URLError) as err:
        DeviceURL.parse(text)
    assert str(err.value) == (
        f"{text!r} has a second '?': join the options with '&', e.g. "
        "grbl:///tmp/s/ttyGRBL?wakeup=0&backlash=50um&settle=0.5"
    )


def test_a_rail_named_again_on_a_new_port_keeps_the_sessions_options() -> None:
    """``rig resume --rail URL`` with the new port alone dropped the session's axis, backlash
    and limits: the X axis moved where the session's frames were shot on Y."""
    from rig.rails.url import on_new_port

    old = "grbl:///dev/ttyUSB0?axis=Y&backlash=50um&wakeup=2"
    assert on_new_port("grbl:///dev/ttyUSB1", old) == (
        "grbl:///dev/ttyUSB1?axis=Y&backlash=50um&wakeup=2",
        ["axis=Y", "backlash=50um", "wakeup=2"],
    )
    # what the new URL names wins; another kind of controller takes its URL as given
    assert on_new_port("grbl:///dev/ttyUSB1?backlash=0", old)[0] == (
        "grbl:///dev/ttyUSB1?backlash=0&axis=Y&wakeup=2"
    )
    assert on_new_port("marlin:///dev/ttyACM0", old) == ("marlin:///dev/ttyACM0", [])
    assert on_new_port("grbl:///dev/ttyUSB1", "grbl:///dev/ttyUSB0") == ("grbl:///dev/ttyUSB1", [])


def test_a_dry_run_refuses_a_scheme_no_driver_serves() -> None:
    """``rig shoot --dry-run --rail nosuch:///dev/x`` said the plan was fine; the run itself
    refused the URL. Both refuse it now, in the same words."""
    from rig.rails import declared_capabilities

    with pytest.raises(URLError, match=r"no focuser driver for nosuch:// .* known schemes: "):
        declared_capabilities("nosuch:///dev/x")
    with pytest.raises(URLError, match=r"no focuser driver for nosuch://"):
        open_focuser("nosuch:///dev/x")
    assert declared_capabilities("sim://?max=2mm").max_position == 2000.0


def test_options_another_kind_of_controller_does_not_carry_are_named() -> None:
    """``rig resume --rail marlin://...`` for a session shot on GRBL along Y, reversed: its
    axis and direction were dropped without a word."""
    from rig.rails.url import left_behind

    old = "grbl:///dev/ttyUSB0?axis=Y&reverse=1&backlash=0.05"
    assert left_behind("marlin:///dev/ttyACM0?axis=Y", old) == ["reverse=1", "backlash=0.05"]
    assert left_behind("grbl:///dev/ttyUSB1", old) == []  # the same kind keeps them

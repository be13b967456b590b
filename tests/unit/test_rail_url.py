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

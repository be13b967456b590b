"""The udev rules: both files well-formed; the rails' covering the documented USB-serial chips."""

import re
from pathlib import Path

import pytest

from tests.paths import ROOT

RULES = ROOT / "udev" / "70-stackrig-rails.rules"
CAMERA_RULES = ROOT / "udev" / "60-stackrig-camera.rules"
# KEY (with optional {attr}), operator, "value" — the udev rules grammar for one assignment.
ITEM = re.compile(r'^[A-Z_]+(\{[A-Za-z0-9_]+\})?(==|!=|\+=|-=|:=|=)"[^"]*"$')


def rule_lines(rules: Path = RULES) -> list[str]:
    return [
        line.strip()
        for line in rules.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("rules", [RULES, CAMERA_RULES], ids=["rails", "camera"])
def test_every_rule_line_is_well_formed(rules: Path) -> None:
    for line in rule_lines(rules):
        for item in (part.strip() for part in line.split(",")):
            assert ITEM.match(item), f"malformed udev item {item!r} in {line!r}"


@pytest.mark.parametrize("rules", [RULES, CAMERA_RULES], ids=["rails", "camera"])
def test_gotos_land_on_labels(rules: Path) -> None:
    text = "\n".join(rule_lines(rules))
    labels = set(re.findall(r'LABEL="([^"]+)"', text))
    assert set(re.findall(r'GOTO="([^"]+)"', text)) <= labels


def test_the_usual_rail_chips_are_matched() -> None:
    text = "\n".join(rule_lines())
    pairs = set(re.findall(r'ATTRS\{idVendor\}=="(\w{4})", ATTRS\{idProduct\}=="(\w{4})"', text))
    assert {
        ("0403", "6001"),
        ("1a86", "7523"),
        ("10c4", "ea60"),
        ("2341", "0043"),
        ("2341", "0042"),
        ("2341", "0010"),
        ("0483", "5740"),  # STM32 native USB: grblHAL, Marlin on SKR boards
    } <= pairs


def test_matched_ports_get_symlink_group_and_modemmanager_exclusion() -> None:
    text = "\n".join(rule_lines())
    action = text.split('LABEL="stackrig_rail"')[1].split("LABEL=")[0]
    assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in action
    assert 'GROUP="dialout"' in action
    assert 'SYMLINK+="focusrail"' in action


def test_stackshot_gets_its_own_name_by_product_string() -> None:
    lines = [line for line in rule_lines() if 'ATTRS{product}=="StackShot*"' in line]
    assert len(lines) == 1
    assert 'ATTRS{idVendor}=="0403"' in lines[0] and 'SYMLINK+="stackshot"' in lines[0]


def test_the_camera_rule_acts_on_the_trigger_the_readme_gives() -> None:
    """``udevadm trigger`` sends "change" unless told otherwise (udev 252), and the camera
    rule skipped every action but "add" and "bind": after the documented install a camera
    already plugged in stayed root's until it was plugged again. Only "remove" is skipped, as
    the rails' rule does."""
    lines = [ln for ln in CAMERA_RULES.read_text().splitlines() if ln and not ln.startswith("#")]
    skips = [ln for ln in lines if ln.startswith("ACTION") and "GOTO" in ln]
    assert skips == ['ACTION=="remove", GOTO="stackrig_camera_end"']
    assert "udevadm trigger --subsystem-match=usb" in CAMERA_RULES.read_text()

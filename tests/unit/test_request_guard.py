"""Which Host names a preview server answers, by the address it is bound to."""

from __future__ import annotations

import socket

from stacker.preview.guard import allowed_host_names, is_loopback


def test_loopback_servers_answer_loopback_names_and_given_names_only() -> None:
    names = allowed_host_names("127.0.0.1", ["Rig.Example.", " "])
    assert {"localhost", "127.0.0.1", "::1", "rig.example"} <= names
    assert socket.gethostname().lower() not in names or socket.gethostname() == "localhost"
    assert "" not in names


def test_servers_on_the_network_also_answer_this_machines_name() -> None:
    machine = socket.gethostname().lower()
    names = allowed_host_names("0.0.0.0")
    assert {machine, f"{machine.split('.')[0]}.local", "localhost"} <= names
    assert "pi.lan" in allowed_host_names("pi.lan")


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]")
    assert is_loopback("127.1.2.3") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")

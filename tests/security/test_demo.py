"""`manage.py demo` serves with DEBUG on and, by default, the development SECRET_KEY that is
published in the source: on this machine only."""

from __future__ import annotations

import subprocess

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "192.168.1.20", "::", "2001:db8::1", "hone.example.org"]
)
def test_demo_refuses_an_address_beyond_this_machine_and_starts_nothing(
    host, monkeypatch, settings, tmp_path
):
    started = []

    def record(command, *args, **kwargs):
        started.append(command)
        raise RuntimeError(f"the demo started {command}")

    monkeypatch.setattr(subprocess, "Popen", record)
    monkeypatch.setattr(subprocess, "run", record)
    settings.VAR_DIR = tmp_path / "var"

    with pytest.raises(CommandError) as error:
        call_command("demo", "--host", host, "--port", "8765")

    assert str(error.value) == (
        f"--host {host} is not a loopback address. The demo is for this machine: it serves "
        "with DEBUG on (error pages show settings and source code) and, unless SECRET_KEY is "
        "set, the development key published in the source (anything Django signs can be "
        "forged). Use 127.0.0.1, ::1 or localhost, or deploy Hone as the README's 'Running it "
        "in production' describes."
    )
    assert (started, (tmp_path / "var").exists()) == ([], False)


def test_loopback_addresses_stay_allowed():
    from feedback.management.commands.demo import is_loopback

    hosts = ["127.0.0.1", "127.0.0.2", "::1", "localhost", "0.0.0.0", "10.0.0.1", "example.org"]

    assert [is_loopback(host) for host in hosts] == [True, True, True, True, False, False, False]

"""The systemd unit of a home, as text: pure functions of fixed inputs. (That systemd
accepts it is checked with systemd-analyze in tests/integration/test_service.py.)"""
from __future__ import annotations

import socket

import pytest

from aios import service
from aios.service import SYSTEM, USER, Service, ServiceError


def make(**changes) -> Service:
    values = dict(home="/home/ann/.aios", scope=USER, name="aios", python="/usr/bin/python3",
                  package_dir="/opt/aios", env={"PATH": "/usr/bin:/bin"}, unit_dir="/home/ann/.config/systemd/user")
    values.update(changes)
    return Service(**values)


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_a_user_unit_runs_the_daemon_in_the_foreground_with_every_path_baked_in():
    text = service.unit_text(make())
    assert lines(text)[2:] == [
        "[Unit]", "Description=AIOS daemon for /home/ann/.aios",
        "", "[Service]", "Type=notify", "NotifyAccess=main", "WorkingDirectory=/opt/aios",
        "Environment=PATH=/usr/bin:/bin",
        "ExecStart=/usr/bin/python3 -m aios --home /home/ann/.aios up",
        "ExecReload=/usr/bin/python3 -m aios --home /home/ann/.aios reexec",
        "ExecStop=/usr/bin/python3 -m aios --home /home/ann/.aios down",
        "# systemd stops or restarts the daemon alone; its jobs keep running and the",
        "# next daemon adopts them. ExecStop (`aios down`) is what stops the jobs.",
        "KillMode=process", "Restart=always", "RestartSec=1",
        "", "[Install]", "WantedBy=default.target"]


def test_a_system_unit_runs_as_the_owner_after_the_network():
    text = service.unit_text(make(scope=SYSTEM, user="ann", group="staff", unit_dir="/etc/systemd/system"))
    assert "User=ann" in lines(text) and "Group=staff" in lines(text)
    assert "After=network-online.target" in lines(text) and "Wants=network-online.target" in lines(text)
    assert "WantedBy=multi-user.target" in lines(text)


def test_a_system_unit_for_roots_home_names_no_user():
    text = service.unit_text(make(scope=SYSTEM, home="/root/.aios"))
    assert not any(line.startswith(("User=", "Group=")) for line in lines(text))


@pytest.mark.parametrize("home, exec_word", [
    ("/srv/my home", '"/srv/my home"'),
    ("/srv/100%", "/srv/100%%"),                       # % starts a systemd specifier
    ("/srv/$HOME", '"/srv/$$HOME"'),                   # $ would expand a variable
    ('/srv/say"hi"', '"/srv/say\\"hi\\""'),
    ("/srv/a;b", '"/srv/a;b"'),                        # a lone ; separates commands
    ("/srv/ünï", '"/srv/ünï"'),
])
def test_paths_are_quoted_so_systemd_reads_them_back_unchanged(home, exec_word):
    text = service.unit_text(make(home=home))
    assert f"ExecStart=/usr/bin/python3 -m aios --home {exec_word} up" in lines(text)


def test_the_interpreters_path_keeps_its_dollar_but_may_not_hold_a_quote():
    text = service.unit_text(make(python="/opt/py $x%/python3"))
    assert 'ExecStart="/opt/py $x%%/python3" -m aios --home /home/ann/.aios up' in lines(text)
    with pytest.raises(ServiceError, match="the interpreter .* holds a control character, a backslash or a quote"):
        service.unit_text(make(python="/opt/it's/python3"))


@pytest.mark.parametrize("home", ["/srv/a\nb", "/srv/a\\b", "/srv/\x7f", "relative/home", "/srv/\udcff"])
def test_a_path_a_unit_cannot_hold_is_a_one_line_error(home):
    with pytest.raises(ServiceError) as err:
        service.unit_text(make(home=home))
    assert "\n" not in str(err.value) and "the home" in str(err.value)


def test_environment_values_are_quoted_whole():
    text = service.unit_text(make(env={"DEVICE_TAGS": "gpu, lab", "PATH": "/bin"}))
    assert 'Environment="DEVICE_TAGS=gpu, lab"' in lines(text)


def test_unit_names_are_readable_and_distinct_per_path():
    assert service.unit_name("/home/ann/.aios", "/home/ann/.aios") == "aios"
    assert service.unit_name("/home/ann/.aios", "/home/ann/.aios", user="ann") == "aios-ann"
    one = service.unit_name("/srv/lab-1", "/home/ann/.aios")
    other = service.unit_name("/tmp/lab-1", "/home/ann/.aios")
    assert one.startswith("aios-lab-1-") and other.startswith("aios-lab-1-") and one != other
    assert service.unit_name("/srv/my home%", "/x") .startswith("aios-my_home-")


def test_the_steps_use_systemctl_of_the_scope():
    user, system = make(), make(scope=SYSTEM, unit_dir="/etc/systemd/system")
    assert service.install_steps(user, start_now=True) == [
        ["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", "aios"]]
    assert service.install_steps(system, start_now=False) == [
        ["systemctl", "daemon-reload"], ["systemctl", "enable", "aios"]]
    assert service.uninstall_steps(user) == [["systemctl", "--user", "disable", "--now", "aios"]]
    assert system.path == "/etc/systemd/system/aios.service"


def test_describe_takes_this_interpreter_and_package(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("DEVICE_TAGS", "gpu")
    svc = service.describe(str(tmp_path / "home"), USER)
    import sys
    from pathlib import Path

    assert svc.python == sys.executable and Path(svc.package_dir, "aios", "service.py").is_file()
    assert svc.unit_dir == str(tmp_path / "cfg" / "systemd" / "user")
    assert svc.env["DEVICE_TAGS"] == "gpu" and svc.name.startswith("aios-home-")


def test_notify_ready_sends_ready_to_the_socket_systemd_names(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert service.notify_ready("ready in 3 ms")
        message = sock.recv(4096).decode()
    import os

    assert message.splitlines() == ["READY=1", f"MAINPID={os.getpid()}", "STATUS=ready in 3 ms"]


def test_notify_ready_does_nothing_without_systemd(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not service.notify_ready()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not service.notify_ready()

"""The benchmarks' CPU accounting: what a process tree spent, ended children included."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import common
from bench.common import postgres_server_pid, process_tree_cpu

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass"


def test_a_running_child_and_an_ended_one_both_count() -> None:
    me = os.getpid()
    start = process_tree_cpu(me)
    assert start is not None
    subprocess.run([sys.executable, "-c", BURN.format(seconds=0.3)], check=True)  # ended
    running = subprocess.Popen(
        [sys.executable, "-c", BURN.format(seconds=0.3) + "\nimport time; time.sleep(30)"]
    )
    try:
        while process_tree_cpu(running.pid) < 0.3:  # type: ignore[operator]
            pass
        assert process_tree_cpu(me) - start >= 0.6  # type: ignore[operator]
    finally:
        running.kill()
        running.wait()


def _fields(ppid: int, utime: int, cutime: int = 0) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, ..., utime (index 11), cutime (13)."""
    fields = ["S", str(ppid)] + ["0"] * 18
    fields[11], fields[13] = str(utime), str(cutime)
    return fields


def test_a_child_waited_for_while_proc_is_read_is_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server (pid 100) waits for a connection (pid 50: pids wrap around) mid-reading.

    Read in pid order, the connection still shows its own 5 ticks, and then the
    server shows them again in its children times: the reading is thrown away.
    """
    tick = os.sysconf("SC_CLK_TCK")
    alive = {50, 100}

    def stat(pid: int) -> list[str] | None:
        if pid == 50:
            if 50 not in alive:
                return None
            alive.discard(50)  # the server waits for it right after this read
            return _fields(100, 5)
        reaped = 5 if 50 not in alive else 0
        return _fields(1, 1, cutime=reaped) if pid == 100 else None

    monkeypatch.setattr(common, "_stat", stat)
    monkeypatch.setattr(common, "_pids", lambda: set(alive))

    assert process_tree_cpu(100) == 6 / tick  # 1 of its own, 5 of the connection: once


def test_a_process_that_is_not_here_is_not_measured() -> None:
    assert process_tree_cpu(2**22 + 12345) is None  # above any pid_max


@pytest.mark.django_db
def test_the_database_server_is_found_when_it_runs_on_this_machine() -> None:
    server = postgres_server_pid()
    if server is None:
        pytest.skip("the database server is not on this machine")
    with open(f"/proc/{server}/comm") as f:
        assert f.read().strip() in ("postgres", "postmaster")
    assert process_tree_cpu(server) > 0  # type: ignore[operator]

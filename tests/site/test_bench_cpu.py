"""The benchmarks' CPU accounting: what a process tree spent, ended children included."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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

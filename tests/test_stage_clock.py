"""The stage clock of resumable jobs: each invocation's stage times in a ledger, written while a stage
runs, so a killed invocation still counts; totals sum every invocation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.commands.stage_clock import StageClock

ROOT = Path(__file__).resolve().parents[1]

KILLED = """
import sys, time
from toolkit.commands.stage_clock import StageClock
clock = StageClock(sys.argv[1], every=0.1)
clock.run("first", lambda: time.sleep(0.3))
clock.run("second", lambda: time.sleep(60))
"""


def test_a_killed_invocation_counts_up_to_its_last_write_and_totals_sum_every_invocation(tmp_path):
    ledger = tmp_path / "stage_times.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(ledger)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.1)
        if ledger.is_file() and json.loads(ledger.read_text())["invocations"][0]["stages"].get("second", 0) >= 1.0:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = json.loads(ledger.read_text())["invocations"][0]["stages"]
    assert 0.3 <= killed["first"] < 1.0 and 1.0 <= killed["second"] < 5.0  # second: up to its last write

    clock = StageClock(ledger, every=0.05)
    assert clock.run("first", lambda: "done") == "done"

    def failing():
        time.sleep(0.2)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):  # a failing stage propagates, its time counted
        clock.run("second", failing)
    mine = clock.seconds()
    assert set(mine) == {"first", "second"} and mine["second"] >= 0.2
    assert clock.invocations == 2
    assert clock.all_seconds() == {k: round(killed[k] + mine[k], 1) for k in ("first", "second")}
    stored = json.loads(ledger.read_text())["invocations"]
    assert [inv["stages"] for inv in stored] == [killed, mine]


def test_a_corrupt_ledger_is_named(tmp_path):
    ledger = tmp_path / "stage_times.json"
    ledger.write_text("{not json")
    with pytest.raises(ValueError, match="stage_times.json: not a stage-time ledger"):
        StageClock(ledger)

"""Stage commands as subprocesses: alone, or several side by side, each logged, with wall time per stage.

The mini benchmark runs every stage through the same command line a user runs at full scale (``python
gen/sample.py ...``), started as ``python -m sda.commands gen/sample.py ...`` so it needs no checkout of the
scripts, in the current directory (every path is the user's); independent jobs (the align sets, the two
diffusion trainings) share the machine's cores; a pool may pin its jobs' threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from sda.commands import COMMANDS
from sda.utils.errors import UserError
from sda.utils.io import write_json

Job = tuple[str, list[str]]  # (name, [script, arguments]) as after `python`
T = TypeVar("T")


class StageRunner:
    """Runs stage commands, logs their output to ``<log_dir>/<name>.log``, keeps seconds per stage and job."""

    def __init__(self, log_dir: Path, threads: int):
        self.log_dir, self.threads = log_dir, threads
        self.seconds: dict[str, float] = {}  # per stage
        self.job_seconds: dict[str, float] = {}  # per job
        log_dir.mkdir(parents=True, exist_ok=True)

    def _start(
        self, name: str, args: list[str], threads: int, env: Mapping[str, str] | None = None
    ) -> tuple[subprocess.Popen, Path]:
        log = self.log_dir / f"{name}.log"
        env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
        with open(log, "a") as f:
            f.write("$ python " + " ".join(args) + "\n")
            f.flush()
            stage = ["-m", "sda.commands"] if args and args[0] in COMMANDS else []  # a stage script: its function
            cmd = [sys.executable, *stage, *args]
            proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.PIPE, text=True)
        return proc, log

    @staticmethod
    def _check(name: str, proc: subprocess.Popen, log: Path) -> None:
        err = proc.communicate()[1] or ""
        with open(log, "a") as f:
            f.write(err)
        if proc.returncode != 0:
            tail = err.strip().splitlines()[-3:]
            raise UserError(f"stage {name} failed (exit {proc.returncode}): {' / '.join(tail)}; see {log}")

    def __call__(self, stage: str, name: str, args: list[str]) -> None:
        self.parallel(stage, [(name, args)])

    def parallel(
        self, stage: str, jobs: list[Job], threads_per_job: int | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        """Run ``jobs`` in order on up to ``threads`` workers side by side; one job alone gets all threads.

        ``threads_per_job`` pins each job's thread count instead: for jobs whose results depend on it (training
        and test-time adaptation: a different split of a float reduction changes every later step), so that
        their outputs do not depend on ``threads`` or on the machine's core count. ``env``: variables set for
        these jobs only, over this process's environment.
        """
        t0 = time.time()
        slots = max(1, min(self.threads, len(jobs)))
        per_job = threads_per_job or max(1, self.threads // slots)
        print(f"[{stage}] {', '.join(n for n, _ in jobs)} ({slots} at a time; logs: {self.log_dir})", flush=True)
        pending: list[Job] = list(jobs)
        running: list[tuple[str, subprocess.Popen, Path, float]] = []
        try:
            while pending or running:
                while pending and len(running) < slots:
                    name, args = pending.pop(0)
                    running.append((name, *self._start(name, args, per_job, env), time.time()))
                done = [r for r in running if r[1].poll() is not None]
                for r in done:
                    running.remove(r)
                    name, proc, log, started = r
                    self.job_seconds[name] = time.time() - started
                    self._check(name, proc, log)
                if not done:
                    time.sleep(0.5)
        finally:
            for _, proc, _, _ in running:
                proc.terminate()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.time() - t0


class StageLog:
    """``<seed folder>/stages.json``: each stage's wall time from the run that did its work.

    A rerun skips a stage whose outputs are complete and keeps its first time, saying it was resumed, so a
    resumed demo reports the real cost of the results, not the seconds of the rerun.
    """

    def __init__(self, path: Path):
        self.path = path
        self.stages: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}
        self.resumed: list[str] = []

    def run(self, name: str, complete: Callable[[], bool], work: Callable[[], T]) -> T | None:
        """Run ``work`` unless this stage is recorded and ``complete()``; record its seconds when it runs."""
        if name in self.stages and complete():
            self.resumed.append(name)
            print(f"[{name}] complete in an earlier run ({self.stages[name]['seconds']} s): skipped", flush=True)
            return None
        t0 = time.time()
        result = work()
        self.stages[name] = {"seconds": round(time.time() - t0, 1)}
        write_json(self.path, self.stages)
        return result

    def seconds(self) -> dict[str, float]:
        return {k: v["seconds"] for k, v in self.stages.items()}


def complete_manifest(path: Path) -> bool:
    """A stage manifest that says its set is complete (gen: ``status``, align: ``complete``)."""
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return m.get("status") == "complete" or m.get("complete") is True

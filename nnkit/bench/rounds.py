"""Implementations timed in rounds: each in a process of its own (``nnkit.bench.worker
--serve``), all warmed up first, then one timed run of each in turn per round.

A machine whose speed drifts (a shared virtual machine moved by a factor two within one
morning) then slows every implementation of a case alike, so the ratios between them
hold even when the absolute figures move. Waiting implementations sit idle, blocked on
their input; a short pause before each run lets the thread pools of the one before
(BLAS, OpenMP) go back to sleep.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import time

#: seconds between one implementation's run and the next one's
PAUSE = 0.5


def timed_runs(run, serve: bool, repeats: int, warm: float) -> tuple[list[float], object]:
    """The worker's side: ``(seconds of each run, the last run's result)`` of ``run()``
    called ``repeats`` times, or with ``serve`` once per line "run" on stdin, until
    another line or its end (after a JSON line saying it is ready and how long its
    warm-up ``warm`` took, and a JSON line with the seconds of each run)."""
    if serve:
        print(json.dumps({"ready": True, "warmup_s": warm}), flush=True)
    times, result = [], None
    for line in sys.stdin if serve else range(repeats):
        if serve and line.strip() != "run":
            break
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
        if serve:
            print(json.dumps({"seconds": times[-1]}), flush=True)
    return times, result


class Served:
    """One worker process answering one JSON line per request."""

    def __init__(self, args, timeout: float, module: str = "nnkit.bench.worker"):
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile(mode="w+")  # (a pipe left unread could fill)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
        )  # fmt: skip
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def reply(self) -> dict:
        """The worker's next JSON line, or ``{"error": why}`` (it then is stopped)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                return {"error": f"no result within {self.timeout:.0f} s"}
            if line is None:
                self.close()
                self._stderr.seek(0)
                tail = (self._stderr.read().strip().splitlines() or ["no output"])[-1]
                return {"error": tail[:200]}
            if line.lstrip().startswith("{"):
                return json.loads(line)

    def ask(self, word: str) -> dict:
        try:
            self.proc.stdin.write(word + "\n")
            self.proc.stdin.flush()
        except OSError:  # it has gone: reply() says why
            pass
        return self.reply()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def run_rounds(jobs: dict, repeats: int, timeout: float, echo=print, pause: float = PAUSE,
               module: str = "nnkit.bench.worker") -> dict:
    """``jobs``: key -> worker arguments. Warm-ups one after another, then ``repeats``
    rounds of one timed run of each; returns key -> the worker's final row (its
    ``times`` from the rounds) or ``{"error": why}``."""
    out, live = {}, {}
    for key, args in jobs.items():
        echo(f"  {key} warm-up ...")
        worker = Served(args, timeout, module)
        ready = worker.reply()
        if "error" in ready:
            echo(f"  {key} failed: {ready['error']}")
            out[key] = ready
        else:
            live[key] = worker
    for i in range(repeats):
        if live:
            echo(f"  round {i + 1} of {repeats}: {', '.join(live)}")
        for key, worker in list(live.items()):
            time.sleep(pause)
            answer = worker.ask("run")
            if "error" in answer:
                echo(f"  {key} failed: {answer['error']}")
                out[key] = answer
                del live[key]
    for key, worker in live.items():
        out[key] = worker.ask("done")
        worker.close()
    return {key: out[key] for key in jobs}

#!/usr/bin/python3
"""Run one client command and measure it from outside, the same way for every client.

usage: timed.py LABEL TIMEOUT_S COUNT -- CMD ARGS...

Prints one JSON line on stdout:
  {"label", "rc", "wall_s", "user_s", "sys_s", "count", "msgs_per_sec", "cpu_us_per_msg",
   "client": <the client's own JSON line, if it printed one>}

CPU is the child's rusage from wait4(2) (the kernel's precise runtime, not 100 Hz ticks),
so it is comparable across smtpkit, smtp-source and lettre-peer. Wall time runs from just
before the spawn to the child's exit: it includes process start and connection setup, for
every client alike. A child still running after TIMEOUT_S is killed (rc reported as -9).
"""

import json
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 6 or sys.argv[4] != "--":
        print(__doc__, file=sys.stderr)
        return 64
    label, timeout_s, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    cmd = sys.argv[5:]
    killed = []

    def on_alarm(_signum, _frame):
        # Bounded: a child still running at the deadline is killed.
        killed.append(True)
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGALRM, on_alarm)
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    # Blocking wait (no polling, so the wrapper takes no CPU from the run it measures).
    _, status, usage = os.wait4(child.pid, 0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    wall = time.perf_counter() - t0
    child.returncode = 0  # already reaped above; keep Popen from waiting again
    out = child.stdout.read().decode(errors="replace") if child.stdout else ""
    err = child.stderr.read().decode(errors="replace") if child.stderr else ""
    rc = -9 if killed else os.waitstatus_to_exitcode(status)
    client = None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                client = json.loads(line)
            except ValueError:
                pass
    user, sys_ = usage.ru_utime, usage.ru_stime
    rec = {
        "label": label,
        "rc": rc,
        "wall_s": wall,
        "user_s": user,
        "sys_s": sys_,
        "count": count,
        "msgs_per_sec": count / wall if rc == 0 and wall > 0 else 0.0,
        "cpu_us_per_msg": (user + sys_) * 1e6 / count if count else None,
        "client": client,
    }
    if rc != 0:
        rec["stderr"] = err[-500:]
        rec["stdout"] = out[-500:]
    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the survivor sweep counts as the candidate's: new processes below the evaluator, except
the evaluator's own: those in its session, and those a helper older than the worker forks later."""
from __future__ import annotations

import os
import subprocess
import sys

from solbench.eval import contain


def test_leftovers_skip_the_evaluators_own_session():
    # A process the evaluator starts after the worker (torch.compile's pool sidecar, started
    # lazily) shares the evaluator's session; a candidate's process never can.
    me = os.getpid()
    before = set(contain.descendants(me))
    own = subprocess.Popen(["sleep", "30"])
    away = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        left = contain.leftovers(me, before, keep=set())
        assert own.pid not in left and away.pid in left
    finally:
        for p in (own, away):
            p.kill()
            p.wait(timeout=10)


def test_leftovers_skip_children_of_an_older_helper_but_not_new_orphans():
    me = os.getpid()
    # A helper that forks its child only when told: like torch.compile's pool, started by the
    # baselines before the worker, growing its workers while the worker runs.
    helper = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; sys.stdin.readline(); "
                               "p = subprocess.Popen(['sleep', '30']); print(p.pid, flush=True); time.sleep(30)"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)  # so only its age, not the session, vouches for its child
    before = set(contain.descendants(me))
    stray = None
    try:
        helper.stdin.write("go\n")
        helper.stdin.flush()
        helper_child = int(helper.stdout.readline())
        stray = subprocess.Popen(["sleep", "30"], start_new_session=True)  # new since `before`, ours
        left = contain.leftovers(me, before, keep=set())
        assert helper_child in contain.descendants(me)
        assert helper_child not in left and helper.pid not in left
        assert stray.pid in left
        # The same helper child counts once its parent is not older than the worker.
        assert helper_child in contain.leftovers(me, before - {helper.pid}, keep=set())
    finally:
        contain.kill_all({helper.pid, *contain.descendants(helper.pid)} | ({stray.pid} if stray else set()))
        for p in (helper, stray):
            if p is not None:
                p.wait(timeout=10)

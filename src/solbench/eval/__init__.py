"""Candidate evaluation: score a kernel written by a person or an agent against an operator's
reference, in an isolated subprocess, with integrity checks against the usual timer games.

* :mod:`solbench.eval.task`: ``solbench task export``, a self-contained task folder (reference,
  input generator, shapes, TASK.md) without the answers (SOL, deployed times, provenance).
* :mod:`solbench.eval.candidate`: what a candidate file must define and how it is called.
* :mod:`solbench.eval.worker` / :mod:`solbench.eval.sandbox`: the subprocess that imports and runs
  the candidate, and the parent side that enforces per-stage timeouts and a memory cap.
* :mod:`solbench.eval.integrity`: identity guards, the fresh-input audit, the side-stream check,
  the suspicious-speed judge.
* :mod:`solbench.eval.evaluate`: stages per shape, results records in the ``run`` schema.
* :mod:`solbench.eval.score`: per-task scores and the batch leaderboard.

See docs/EVAL.md.
"""

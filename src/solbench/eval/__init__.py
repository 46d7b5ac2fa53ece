"""Candidate evaluation: score a kernel written by a person or an agent against an operator's
reference. The candidate runs in a contained subprocess that only produces outputs; the judge,
which never imports it, decides everything (docs/EVAL.md, Threat model).

* :mod:`solbench.eval.task`: ``solbench task export``, a self-contained task folder (reference,
  input generator, shapes, TASK.md) without the answers (SOL, deployed times, provenance).
* :mod:`solbench.eval.candidate`: what a candidate file must define and how it is called.
* :mod:`solbench.eval.judge`: checks, audits and the timing protocol, in the evaluator's process.
* :mod:`solbench.eval.worker` / :mod:`solbench.eval.sandbox` / :mod:`solbench.eval.contain`: the
  candidate's process, the judge's handle on it (deadlines, memory cap, survivors), and the
  containment (PID namespace, subreaper, Landlock).
* :mod:`solbench.eval.wire`: frames of bytes between the two; no Python object crosses.
* :mod:`solbench.eval.integrity`: the side-stream check and the suspicious-speed judge.
* :mod:`solbench.eval.evaluate`: stages per shape, results records in the ``run`` schema.
* :mod:`solbench.eval.score`: per-task scores and the batch leaderboard.

See docs/EVAL.md.
"""

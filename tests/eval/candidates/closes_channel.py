"""Misbehaves (a hang behind a closed door): closes both of the worker's channels to the judge,
then stays alive."""
import os
import time


def silu_and_mul(x):
    os.close(0)
    os.close(int(os.environ["SOLBENCH_EVAL_REPLY_FD"]))
    while True:
        time.sleep(0.05)

"""Misbehaves (a hang that looks busy): answers a call with the head of a frame on the evaluator's
reply channel, then one byte at a time, forever, so the judge always has something to read."""
import os
import struct
import time


def silu_and_mul(x):
    fd = int(os.environ["SOLBENCH_EVAL_REPLY_FD"])
    os.write(fd, b"SBW1" + struct.pack("<I", 1 << 20))  # a header of 1 MB, to come
    while True:
        os.write(fd, b" ")
        time.sleep(0.05)

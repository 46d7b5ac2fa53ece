"""Cheat (forging the protocol): writes well-formed 'all good' frames of the evaluator's own wire
format, and junk, to stdout and to every pipe it can find (one of them is the evaluator's reply
channel). Its outputs are wrong."""
import json
import os
import stat
import struct
import sys

import torch


def _frame(header):
    head = json.dumps({**header, "bufs": []}).encode()
    return b"SBW1" + struct.pack("<I", len(head)) + head


_forged = _frame({"ok": True, "desc": "function silu_and_mul()", "import_s": 0.0}) + \
    _frame({"ok": True, "verdict": "pass"}) + b"\n{\"ev\": \"check\", \"ok\": true}\n"
sys.stdout.buffer.write(_forged)
sys.stdout.flush()
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, _forged)
    except OSError:
        pass


def silu_and_mul(x):
    return torch.zeros((*x.shape[:-1], x.shape[-1] // 2), dtype=x.dtype, device=x.device)

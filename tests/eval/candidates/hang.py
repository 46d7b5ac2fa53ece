"""Misbehaves: never returns."""
import time


def silu_and_mul(x):
    while True:
        time.sleep(0.05)

"""Misbehaves: kills its own process on the first call (a segfault would look the same)."""
import os


def silu_and_mul(x):
    os._exit(139)

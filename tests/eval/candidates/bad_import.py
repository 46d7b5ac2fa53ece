"""Fails to import."""
import torch
raise RuntimeError("this candidate does not even import")

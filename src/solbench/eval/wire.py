"""The wire between the judge and the worker: frames of a JSON header and raw buffers.

Nothing but bytes crosses: a tensor travels as its dtype, shape, strides and contiguous bytes and
is rebuilt on the other side as a new, plain ``torch.Tensor``; other values travel as JSON. So no
object of the candidate's process (a tensor subclass, a lazy wrapper, a Parameter whose data is
computed when read) can exist in the judge's process.

A frame is ``MAGIC``, the header's length (4 bytes), the header (JSON, with ``"bufs"``: the
lengths of the buffers that follow) and the buffers. The reader is told the most bytes it will
accept, so a hostile writer cannot make the judge allocate without bound; anything that does not
parse is a :class:`WireError`.
"""
from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

MAGIC = b"SBW1"
MAX_HEADER = 16 << 20  # a decode plan's digests: thousands of calls


class WireError(Exception):
    """A frame that does not parse, is over its size limit, or a closed pipe."""


# ---- frames --------------------------------------------------------------------------------------

def write_frame(fd: int, header: dict, bufs: list = ()) -> None:
    head = json.dumps({**header, "bufs": [len(memoryview(b).cast("B")) for b in bufs]}).encode()
    _write_all(fd, MAGIC + struct.pack("<I", len(head)) + head)
    for b in bufs:
        _write_all(fd, memoryview(b).cast("B"))


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        n = os.write(fd, view)
        view = view[n:]


def read_frame(fd: int, max_bytes: int, read_exact=None) -> tuple[dict, list[bytearray]]:
    """One frame from ``fd``. ``read_exact(fd, n)`` may be given (the judge's, which enforces a
    deadline); buffers beyond ``max_bytes`` in total are refused before they are read."""
    read_exact = read_exact or _read_exact
    magic = bytes(read_exact(fd, 4))
    if magic != MAGIC:
        raise WireError(f"not a frame (starts with {magic!r})")
    (hlen,) = struct.unpack("<I", bytes(read_exact(fd, 4)))
    if hlen > MAX_HEADER:
        raise WireError(f"frame header of {hlen} bytes (limit {MAX_HEADER})")
    try:
        header = json.loads(bytes(read_exact(fd, hlen)))
    except ValueError as e:
        raise WireError(f"frame header is not JSON ({e})") from None
    sizes = header.pop("bufs", None) if isinstance(header, dict) else None
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise WireError("frame header without buffer sizes")
    if sum(sizes) > max_bytes:
        raise WireError(f"frame of {sum(sizes)} bytes where at most {max_bytes} were expected")
    return header, [read_exact(fd, s) for s in sizes]


def _read_exact(fd: int, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise WireError("pipe closed")
        got += k
    return buf


# ---- values --------------------------------------------------------------------------------------

def _dtype(name: str):
    import torch

    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise WireError(f"unknown dtype {name!r}")
    return dt


def encode(value: Any, bufs: list) -> Any:
    """A JSON-able description of ``value``; tensor bytes are appended to ``bufs``."""
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        bufs.append(t.view(torch.uint8).numpy() if t.numel() else b"")
        return {"t": len(bufs) - 1, "dtype": str(t.dtype).replace("torch.", ""), "shape": list(value.shape),
                "stride": list(value.stride()), "device": value.device.type}
    if isinstance(value, torch.dtype):
        return {"dtype_value": str(value).replace("torch.", "")}
    if isinstance(value, tuple):
        return {"tuple": [encode(v, bufs) for v in value]}
    if isinstance(value, list):
        return {"list": [encode(v, bufs) for v in value]}
    if isinstance(value, dict):
        return {"dict": {str(k): encode(v, bufs) for k, v in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"v": value}
    raise TypeError(f"cannot send a {type(value).__name__} across the evaluator's boundary")


def decode(desc: Any, bufs: list, device=None, keep_strides: bool = False) -> Any:
    """Rebuild what :func:`encode` described, tensors as new plain tensors on ``device`` (default:
    CPU). Raises :class:`WireError` on anything malformed."""
    import torch

    if not isinstance(desc, dict) or len(desc) == 0:
        raise WireError(f"malformed value {str(desc)[:80]}")
    if "t" in desc:
        try:
            dt, shape = _dtype(desc["dtype"]), [int(s) for s in desc["shape"]]
            raw = bufs[int(desc["t"])]
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise WireError(f"malformed tensor {str(desc)[:120]} ({e})") from None
        numel = math.prod(shape)
        itemsize = torch.empty((), dtype=dt).element_size()
        if any(s < 0 for s in shape) or len(raw) != numel * itemsize:
            raise WireError(f"tensor of shape {shape} and dtype {dt} sent with {len(raw)} bytes")
        flat = torch.frombuffer(raw, dtype=torch.uint8) if numel else torch.empty(0, dtype=torch.uint8)
        t = flat.view(dt).reshape(shape)
        if keep_strides and desc.get("stride") and list(desc["stride"]) != list(t.stride()):
            s = torch.empty_strided(shape, [int(x) for x in desc["stride"]], dtype=dt)
            s.copy_(t)
            t = s
        return t.to(device) if device is not None and torch.device(device).type != "cpu" else t.clone()
    if "dtype_value" in desc:
        return _dtype(desc["dtype_value"])
    if "tuple" in desc:
        return tuple(decode(v, bufs, device, keep_strides) for v in desc["tuple"])
    if "list" in desc:
        return [decode(v, bufs, device, keep_strides) for v in desc["list"]]
    if "dict" in desc:
        return {k: decode(v, bufs, device, keep_strides) for k, v in desc["dict"].items()}
    if "v" in desc:
        return desc["v"]
    raise WireError(f"malformed value {str(desc)[:80]}")


def nbytes(value: Any) -> int:
    """Bytes the tensors in ``value`` take on the wire."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 0


# ---- digests -------------------------------------------------------------------------------------

#: Bytes digested per step (their int64 running sums take 16x that on the device).
DIGEST_CHUNK = 32 << 20


def digests(per_call: list[list]) -> list[list[int]]:
    """Per call, for each of its output tensors, the sum and the sum of squares of its bytes:
    exact integers, the same on any device and in any summation order. The worker commits to them
    at the end of a timing pass, before the judge says which calls it will look at; the judge
    recomputes them from the bytes it fetches. Batched: a few kernels per 32 MB of outputs,
    however many calls (a decode plan keeps thousands)."""
    import torch

    flat = [(n, t.detach().reshape(-1).view(torch.uint8)) for n, outs in enumerate(per_call) for t in outs]
    out: list[list[int]] = [[] for _ in per_call]
    i = 0
    while i < len(flat):
        j, size = i, 0
        while j < len(flat) and (j == i or size + flat[j][1].numel() <= DIGEST_CHUNK):
            size += flat[j][1].numel()
            j += 1
        group = flat[i:j]
        lens = [b.numel() for _, b in group]
        if size:
            v = torch.cat([b for _, b in group]).to(torch.int64)
            zero = torch.zeros(1, dtype=torch.int64, device=v.device)
            c1, c2 = torch.cat([zero, torch.cumsum(v, 0)]), torch.cat([zero, torch.cumsum(v * v, 0)])
            ends = torch.tensor([sum(lens[:m + 1]) for m in range(len(lens))], device=v.device)
            s1 = torch.diff(c1[ends], prepend=zero).tolist()
            s2 = torch.diff(c2[ends], prepend=zero).tolist()
        else:
            s1 = s2 = [0] * len(group)
        for (n, _), a, b in zip(group, s1, s2):
            out[n] += [int(a), int(b)]
        i = j
    return out


def digests_match(a: list, b: list) -> bool:
    return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
        isinstance(x, int) and isinstance(y, int) and x == y for x, y in zip(a, b))

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
MAX_HEADER = 4 << 20


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

def digests(per_call: list[list]) -> list[list[float]]:
    """Per call, the L1 and L2 norms (float64) of the bytes of each of its output tensors: what
    the worker commits to at the end of a timing pass, before the judge says which calls it will
    look at. Computed with few kernels on the device (batched over calls); the judge recomputes
    them from the bytes it fetches."""
    import torch

    flat: list = []
    owners: list[int] = []
    for n, outs in enumerate(per_call):
        for t in outs:
            flat.append(t)
            owners.append(n)
    out: list[list[float]] = [[] for _ in per_call]
    chunk: list = []
    chunk_owner: list[int] = []
    budget = 0

    def flush():
        if not chunk:
            return
        conv = [t.detach().reshape(-1).view(torch.uint8).to(torch.float32) if t.numel() else
                torch.zeros(1, device=t.device) for t in chunk]
        l1 = torch._foreach_norm(conv, 1, dtype=torch.float64)
        l2 = torch._foreach_norm(conv, 2, dtype=torch.float64)
        vals = torch.stack([torch.stack(list(l1)), torch.stack(list(l2))], 1).cpu().tolist()
        for o, (a, b) in zip(chunk_owner, vals):
            out[o] += [a, b]
        chunk.clear()
        chunk_owner.clear()

    for t, n in zip(flat, owners):
        if budget + 4 * t.numel() * t.element_size() > (256 << 20):
            flush()
            budget = 0
        chunk.append(t if t.is_contiguous() else t.contiguous())
        chunk_owner.append(n)
        budget += 4 * t.numel() * t.element_size()
    flush()
    return out


def digests_match(a: list[float], b: list[float], rel: float = 1e-6) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
            return False
        if math.isnan(x) or math.isnan(y):
            if not (math.isnan(x) and math.isnan(y)):
                return False
        elif abs(x - y) > rel * max(abs(x), abs(y), 1.0):
            return False
    return True

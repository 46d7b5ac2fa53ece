"""JIT machinery of the CUDA backend: compile CUDA C++ with NVRTC, cache the code on disk, load
it into a device's primary context and launch it on torch's current stream.

Why ``cuda-bindings`` (``cuda.bindings.nvrtc`` / ``cuda.bindings.driver``): it is NVIDIA's own
maintained binding, a thin 1:1 layer over the NVRTC and driver C APIs, so every feature we need
is there as documented (name expressions, cubin output, ``cuLaunchKernelEx`` with the
programmatic-serialization attribute for PDL) and nothing else comes along. It installs from
PyPI beside the ``nvidia-cuda-nvrtc`` wheel, which is all a CPU machine needs to compile for any
architecture, so CI tests the compile step without a GPU. CuPy's RawModule also wraps NVRTC but
brings a second CUDA array library, and its launch has no launch attributes (so no PDL);
torch.utils.cpp_extension needs nvcc and a host compiler at run time.

Nothing here is imported by ``import solbench``: the bindings are imported at the first compile.

The disk cache key is a hash of (format version, the sources' text, arch, template
instantiations -- which carry the dtype and activation --, NVRTC options, output kind, NVRTC
version). An entry is one file: a header with its metadata and a checksum, then the code. A
writer writes a temporary file in the cache folder and renames it over the entry: the rename is
atomic, so two processes compiling at once both leave a complete entry (the last one wins) and a
reader never sees half a file; an entry whose checksum does not match is compiled again.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

#: Where the .cu / .cuh sources live (package data).
SOURCE_DIR = Path(__file__).resolve().parent
#: Bump when the entry format or the meaning of a key changes.
CACHE_FORMAT = 1
_MAGIC = b"SOLBENCH-JIT\n"
INSTALL_HINT = ("pip install 'solbench[cuda]' (cuda-bindings and nvidia-cuda-nvrtc, CUDA 13), or "
                "pip install 'cuda-bindings<13' nvidia-cuda-nvrtc-cu12 for a CUDA 12 driver")


class JitUnavailable(RuntimeError):
    """NVRTC or the CUDA driver cannot be used here; the message says why and what to install."""


class CompileError(RuntimeError):
    """NVRTC rejected a source; the message carries NVRTC's log."""


# ---- the bindings ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except Exception as e:  # noqa: BLE001
        raise JitUnavailable(f"cuda-bindings is not importable ({type(e).__name__}: {e}); {INSTALL_HINT}") from None
    try:
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as e:  # noqa: BLE001 -- the binding raises when libnvrtc cannot be found
        raise JitUnavailable(f"NVRTC cannot be loaded ({type(e).__name__}: {str(e)[:200]}); {INSTALL_HINT}") from None
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise JitUnavailable(f"nvrtcVersion failed ({err}); {INSTALL_HINT}")
    return nvrtc


def nvrtc_version() -> tuple[int, int]:
    _, major, minor = _nvrtc().nvrtcVersion()
    return int(major), int(minor)


def nvrtc_unavailable_reason() -> str | None:
    """None when NVRTC can compile here (no GPU needed), else why not."""
    try:
        _nvrtc()
    except JitUnavailable as e:
        return str(e)
    return None


def supported_archs() -> list[int]:
    """The ``sm_XY`` numbers (``90`` for sm_90) this NVRTC can generate code for."""
    nv = _nvrtc()
    err, n = nv.nvrtcGetNumSupportedArchs()
    _check_nvrtc(err, "nvrtcGetNumSupportedArchs")
    err, archs = nv.nvrtcGetSupportedArchs()
    _check_nvrtc(err, "nvrtcGetSupportedArchs")
    return [int(a) for a in archs]


def arch_number(arch: int | str) -> int:
    """``90`` for ``90`` and for ``"90a"``: an arch-specific target (``sm_90a``, which warpgroup
    MMAs and TMA need) is compiled by the NVRTC that supports its base number."""
    text = str(arch)
    if not text.rstrip("a").isdigit():
        raise ValueError(f"arch must be a number such as 90, or one with the arch-specific suffix (90a), got {arch!r}")
    return int(text.rstrip("a"))


def _check_nvrtc(err, what: str, prog=None) -> None:
    nv = _nvrtc()
    if err == nv.nvrtcResult.NVRTC_SUCCESS:
        return
    log = _program_log(prog) if prog is not None else ""
    raise CompileError(f"{what} failed: {err.name if hasattr(err, 'name') else err}" + (f"\n{log}" if log else ""))


def _program_log(prog) -> str:
    nv = _nvrtc()
    err, n = nv.nvrtcGetProgramLogSize(prog)
    if err != nv.nvrtcResult.NVRTC_SUCCESS or n <= 1:
        return ""
    buf = b" " * n
    nv.nvrtcGetProgramLog(prog, buf)
    return buf.rstrip(b"\x00").decode(errors="replace")


# ---- sources, keys and the disk cache ---------------------------------------------------------

@functools.lru_cache(maxsize=None)
def read_sources(main: str) -> tuple[tuple[str, str], tuple[tuple[str, str], ...]]:
    """``(main file, its text)`` and every ``.cuh`` beside it as ``(include name, text)``: NVRTC
    gets the headers in memory, so the compile needs no include path and the hash covers them."""
    text = (SOURCE_DIR / main).read_text()
    headers = tuple(sorted((p.name, p.read_text()) for p in SOURCE_DIR.glob("*.cuh")))
    return (main, text), headers


def source_hash(main: str) -> str:
    (name, text), headers = read_sources(main)
    h = hashlib.sha256()
    for n, t in ((name, text), *headers):
        h.update(n.encode() + b"\0" + t.encode() + b"\0")
    return h.hexdigest()


def cache_key(src_hash: str, arch: int | str, names: Sequence[str], options: Sequence[str], output: str,
              compiler: tuple[int, int]) -> str:
    """The disk-cache key of one compile: any input that changes the code changes the key."""
    doc = {"format": CACHE_FORMAT, "source": src_hash, "arch": str(arch), "names": list(names),
           "options": list(options), "output": output, "nvrtc": list(compiler)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    """``$SOLBENCH_CUDA_CACHE``, else ``$XDG_CACHE_HOME/solbench/cuda`` (``~/.cache`` by default)."""
    env = os.environ.get("SOLBENCH_CUDA_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "solbench" / "cuda"


@dataclass(frozen=True)
class Compiled:
    """Code for one (sources, arch, instantiations, options) and how it was obtained."""

    key: str
    code: bytes                 # a cubin, or PTX text
    output: str                 # "cubin" or "ptx"
    lowered: dict = field(hash=False)  # name expression -> mangled symbol
    cache: str                  # "miss" (compiled now) or "disk"
    seconds: float              # compile (miss) or read (disk) time
    arch: int = 0
    options: tuple = ()


def _entry_path(cache_dir: Path, key: str, output: str) -> Path:
    return cache_dir / f"{key}.{output}"


def _write_entry(path: Path, meta: dict, code: bytes) -> None:
    meta = {**meta, "sha256": hashlib.sha256(code).hexdigest(), "size": len(code)}
    head = json.dumps(meta, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + len(head).to_bytes(4, "little") + head + code)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old entry or the whole new one
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_entry(path: Path) -> tuple[dict, bytes] | None:
    """``(metadata, code)`` of a valid cache entry, or None when it is missing or damaged."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
        return None
    n = int.from_bytes(blob[len(_MAGIC):len(_MAGIC) + 4], "little")
    start = len(_MAGIC) + 4
    try:
        meta = json.loads(blob[start:start + n])
    except ValueError:
        return None
    code = blob[start + n:]
    if len(code) != meta.get("size") or hashlib.sha256(code).hexdigest() != meta.get("sha256"):
        return None
    return meta, code


def compile_source(main: str, names: Sequence[str], arch: int | str, options: Sequence[str] = (),
                   output: str = "cubin", cache_dir: Path | str | None = None) -> Compiled:
    """Compile ``main`` (a .cu beside this module) for ``sm_<arch>``, instantiating the template
    ``names`` (NVRTC name expressions), through the disk cache. ``output``: ``"cubin"`` (SASS,
    what the driver loads with no further JIT) or ``"ptx"``. Needs NVRTC, not a GPU."""
    if output not in ("cubin", "ptx"):
        raise ValueError(f"output must be 'cubin' or 'ptx', got {output!r}")
    compiler = nvrtc_version()
    key = cache_key(source_hash(main), arch, names, options, output, compiler)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _entry_path(cache_dir, key, output)
    t0 = time.perf_counter()
    hit = read_entry(path)
    if hit is not None and set(hit[0].get("lowered", {})) >= set(names):
        meta, code = hit
        return Compiled(key, code, output, dict(meta["lowered"]), "disk", time.perf_counter() - t0, arch,
                        tuple(options))
    code, lowered = _nvrtc_compile(main, names, arch, options, output)
    seconds = time.perf_counter() - t0
    meta = {"main": main, "arch": arch, "names": list(names), "options": list(options), "output": output,
            "nvrtc": list(compiler), "lowered": lowered, "compile_s": round(seconds, 4)}
    try:
        _write_entry(path, meta, code)
    except OSError:
        pass  # a read-only or full cache folder costs a compile per process, nothing more
    return Compiled(key, code, output, lowered, "miss", seconds, arch, tuple(options))


def _nvrtc_compile(main: str, names: Sequence[str], arch: int | str, options: Sequence[str], output: str):
    nv = _nvrtc()
    archs = supported_archs()
    if arch_number(arch) not in archs:
        raise JitUnavailable(f"NVRTC {'.'.join(map(str, nvrtc_version()))} cannot compile for sm_{arch}; "
                             f"it supports sm_{', sm_'.join(map(str, archs))}")
    (name, text), headers = read_sources(main)
    err, prog = nv.nvrtcCreateProgram(text.encode(), name.encode(), len(headers),
                                      [t.encode() for _, t in headers], [n.encode() for n, _ in headers])
    _check_nvrtc(err, "nvrtcCreateProgram")
    try:
        for n in names:
            err, = nv.nvrtcAddNameExpression(prog, n.encode())
            _check_nvrtc(err, f"nvrtcAddNameExpression({n})")
        target = f"--gpu-architecture={'sm' if output == 'cubin' else 'compute'}_{arch}"
        opts = [target.encode(), b"--std=c++17"] + [o.encode() for o in options]
        err, = nv.nvrtcCompileProgram(prog, len(opts), opts)
        _check_nvrtc(err, f"compiling {name} for sm_{arch} with {' '.join(o.decode() for o in opts)}", prog)
        lowered = {}
        for n in names:
            err, sym = nv.nvrtcGetLoweredName(prog, n.encode())
            _check_nvrtc(err, f"nvrtcGetLoweredName({n})")
            lowered[n] = sym.decode() if isinstance(sym, bytes) else str(sym)
        if output == "cubin":
            err, size = nv.nvrtcGetCUBINSize(prog)
            _check_nvrtc(err, "nvrtcGetCUBINSize")
            buf = b" " * size
            err, = nv.nvrtcGetCUBIN(prog, buf)
            _check_nvrtc(err, "nvrtcGetCUBIN")
        else:
            err, size = nv.nvrtcGetPTXSize(prog)
            _check_nvrtc(err, "nvrtcGetPTXSize")
            buf = b" " * size
            err, = nv.nvrtcGetPTX(prog, buf)
            _check_nvrtc(err, "nvrtcGetPTX")
        return bytes(buf), lowered
    finally:
        nv.nvrtcDestroyProgram(prog)


# ---- the driver: load and launch ----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _driver():
    try:
        from cuda.bindings import driver
    except Exception as e:  # noqa: BLE001
        raise JitUnavailable(f"cuda-bindings is not importable ({type(e).__name__}: {e}); {INSTALL_HINT}") from None
    try:
        (err,) = driver.cuInit(0)
    except Exception as e:  # noqa: BLE001 -- the binding raises when libcuda cannot be found
        raise JitUnavailable(f"the CUDA driver cannot be loaded ({type(e).__name__}: {str(e)[:200]})") from None
    if err != driver.CUresult.CUDA_SUCCESS:
        raise JitUnavailable(f"cuInit failed ({err.name}): no usable CUDA driver")
    return driver


def _check_cu(err, what: str) -> None:
    drv = _driver()
    if err != drv.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{what} failed: {err.name if hasattr(err, 'name') else err}")


_lock = threading.Lock()
_contexts: dict[int, object] = {}


def _enter(device: int) -> bool:
    """Make ``device``'s primary context (the one torch's runtime uses) current on this thread.
    Returns True when it had to be pushed: the caller pops it again, so that the thread's current
    device, as torch sees it, is left as it was."""
    drv = _driver()
    ctx = _contexts.get(device)
    if ctx is None:
        with _lock:
            ctx = _contexts.get(device)
            if ctx is None:
                err, dev = drv.cuDeviceGet(device)
                _check_cu(err, "cuDeviceGet")
                err, ctx = drv.cuDevicePrimaryCtxRetain(dev)
                _check_cu(err, "cuDevicePrimaryCtxRetain")
                _contexts[device] = ctx
    err, cur = drv.cuCtxGetCurrent()
    if err == drv.CUresult.CUDA_SUCCESS and int(cur) == int(ctx):
        return False
    (err,) = drv.cuCtxPushCurrent(ctx)
    _check_cu(err, "cuCtxPushCurrent")
    return True


def _leave(pushed: bool) -> None:
    if pushed:
        _driver().cuCtxPopCurrent()


@dataclass
class Loaded:
    """A compiled module loaded on one device: its kernels by name expression."""

    module: object
    functions: dict
    load_s: float


def load(compiled: Compiled, device: int) -> Loaded:
    """Load ``compiled`` into ``device``'s primary context."""
    drv = _driver()
    pushed = _enter(device)
    try:
        t0 = time.perf_counter()
        code = compiled.code if compiled.output == "cubin" else compiled.code.rstrip(b"\0") + b"\0"
        err, module = drv.cuModuleLoadData(code)  # bytes: read through the buffer protocol
        if err != drv.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuModuleLoadData failed ({err.name}) for sm_{compiled.arch} code from NVRTC "
                               f"{'.'.join(map(str, nvrtc_version()))}: the driver may be older than NVRTC")
        functions = {}
        for name, sym in compiled.lowered.items():
            err, fn = drv.cuModuleGetFunction(module, sym.encode())
            _check_cu(err, f"cuModuleGetFunction({name})")
            functions[name] = fn
        return Loaded(module, functions, time.perf_counter() - t0)
    finally:
        _leave(pushed)


class Launcher:
    """Launches kernels whose one parameter is a ctypes structure passed by value, with
    ``cuLaunchKernelEx`` on a raw stream handle (torch's current stream, so CUDA-graph capture
    records the launch). ``pdl``: the programmatic-stream-serialization attribute (sm_90+): the
    kernel may start while its predecessor in the stream finishes, and must call
    ``griddepcontrol.wait`` before touching memory (``pdl_wait`` in common.cuh)."""

    def __init__(self):
        drv = _driver()
        self._drv = drv
        attr = drv.CUlaunchAttribute()
        attr.id = drv.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        attr.value.programmaticStreamSerializationAllowed = 1
        self._pdl_attrs = [attr]

    def launch(self, fn, grid: tuple[int, int, int], block: tuple[int, int, int], stream: int, params,
               device: int, pdl: bool, shared_bytes: int = 0) -> None:
        """``shared_bytes``: dynamic shared memory; past 48 KB the function must have been allowed
        that much first (:func:`allow_shared`)."""
        drv = self._drv
        cfg = drv.CUlaunchConfig()
        cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = grid
        cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = block
        cfg.sharedMemBytes = shared_bytes
        cfg.hStream = drv.CUstream(stream)
        if pdl:
            cfg.attrs = self._pdl_attrs
            cfg.numAttrs = 1
        else:
            cfg.numAttrs = 0
        argv = (ctypes.c_void_p * 1)(ctypes.addressof(params))  # kernelParams: void*[] of one struct
        pushed = _enter(device)
        try:
            (err,) = drv.cuLaunchKernelEx(cfg, fn, ctypes.addressof(argv), 0)
        finally:
            _leave(pushed)
        if err != drv.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuLaunchKernelEx failed: {err.name} (grid {grid}, block {block}, pdl {pdl})")


def allow_shared(fn, nbytes: int, device: int) -> None:
    """Let kernel ``fn`` launch with ``nbytes`` of dynamic shared memory (above the 48 KB default)."""
    drv = _driver()
    pushed = _enter(device)
    try:
        (err,) = drv.cuFuncSetAttribute(
            fn, drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, nbytes)
    finally:
        _leave(pushed)
    _check_cu(err, f"cuFuncSetAttribute(max dynamic shared memory = {nbytes} bytes)")


class Sm90Kernels:
    """The per-device state of one sm_90a source: compiled once (through the disk cache), loaded
    into a device's context at its first launch there, each kernel allowed ``shared_bytes`` of
    dynamic shared memory. ``names``: {key: NVRTC name expression}; :meth:`get` returns
    ({key: CUfunction}, facts about the first use)."""

    ARCH = "90a"

    def __init__(self, what: str, source: str, names: dict, shared_bytes: int):
        self.what, self.source, self.names, self.shared_bytes = what, source, dict(names), shared_bytes
        self._loaded: dict[int, tuple[dict, dict]] = {}
        self._lock = threading.Lock()

    def compile(self, output: str = "cubin", cache_dir=None) -> Compiled:
        """Every kernel of the source, compiled (or read from the disk cache); no GPU needed."""
        return compile_source(self.source, list(self.names.values()), self.ARCH, (), output, cache_dir)

    def get(self, device: int) -> tuple[dict, dict]:
        hit = self._loaded.get(device)
        if hit is not None:
            return hit
        import torch

        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) != (9, 0):
            raise RuntimeError(f"{self.what}: the kernel is built for sm_90a (H100 / H200), this GPU is "
                               f"sm_{major}{minor}")
        with self._lock:
            if device not in self._loaded:
                t0 = time.perf_counter()
                compiled = self.compile()
                loaded = load(compiled, device)
                fns = {key: loaded.functions[name] for key, name in self.names.items()}
                for fn in fns.values():
                    allow_shared(fn, self.shared_bytes, device)
                facts = {"jit_cache": compiled.cache, "jit_compile_s": round(compiled.seconds, 4),
                         "jit_first_use_s": round(time.perf_counter() - t0, 4), "arch": f"sm_{self.ARCH}",
                         "nvrtc": ".".join(map(str, nvrtc_version()))}
                self._loaded[device] = (fns, facts)
        return self._loaded[device]

    def prepare(self, device=None) -> dict:
        """Compile and load (first use) and say how: ``jit_cache`` miss / disk / memory."""
        import torch

        index = torch.device(device if device is not None else "cuda").index
        index = torch.cuda.current_device() if index is None else index
        before = index in self._loaded
        t0 = time.perf_counter()
        facts = dict(self.get(index)[1])
        if before:
            facts.update(jit_cache="memory", jit_first_use_s=round(time.perf_counter() - t0, 6))
        return facts


#: The swizzle widths (bytes) a tensor map can write and the kernels' MMA descriptors read.
SWIZZLES = (128, 64, 32)


def tensor_map_args(drv, ptr: int, dtype: str, dims, strides_bytes, box, swizzle: int = 128) -> tuple:
    """``cuTensorMapEncodeTiled``'s arguments as the binding takes them: its array arguments are
    lists of ``cuuint64_t`` / ``cuuint32_t`` objects (plain ints are a TypeError)."""
    if swizzle not in SWIZZLES:
        raise ValueError(f"tensor maps here swizzle by {SWIZZLES} bytes, got {swizzle}")
    u64, u32 = drv.cuuint64_t, drv.cuuint32_t
    return (getattr(drv.CUtensorMapDataType, f"CU_TENSOR_MAP_DATA_TYPE_{dtype}"), len(dims), ptr,
            [u64(int(d)) for d in dims], [u64(int(st)) for st in strides_bytes], [u32(int(b)) for b in box],
            [u32(1)] * len(dims), drv.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
            getattr(drv.CUtensorMapSwizzle, f"CU_TENSOR_MAP_SWIZZLE_{swizzle}B"),
            drv.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            drv.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)


def tensor_map(into, ptr: int, dtype: str, dims, strides_bytes, box, what: str, swizzle: int = 128) -> None:
    """A tiled TMA descriptor (``CUtensorMap``) with the swizzle the sm_90a kernels' MMA
    descriptors read (``swizzle`` bytes, the box's inner extent in bytes at most) and zeros out of
    range, written into ``into`` (a 128-byte ctypes field of a kernel's parameter struct). ``dims``
    and ``box`` innermost first; ``strides_bytes`` of every dimension but the innermost;
    ``dtype``: the driver's name (``"UINT8"``, ``"BFLOAT16"``)."""
    drv = _driver()
    err, tmap = drv.cuTensorMapEncodeTiled(*tensor_map_args(drv, ptr, dtype, dims, strides_bytes, box, swizzle))
    if err != drv.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{what}: cuTensorMapEncodeTiled failed ({err.name}) for dims {list(dims)}, "
                           f"strides {list(strides_bytes)} bytes, box {list(box)}")
    ctypes.memmove(ctypes.addressof(into), tmap.getPtr(), ctypes.sizeof(into))


@functools.lru_cache(maxsize=None)
def launcher() -> Launcher:
    return Launcher()

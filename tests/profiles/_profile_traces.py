"""Builders for PyTorch profiler (Kineto) Chrome traces, the way the profiler writes them: cpu_op,
cuda_runtime and kernel events linked by External id and correlation, plus metadata and flow events."""
import json

SILU = "void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel<c10::BFloat16>, true>(c10::BFloat16*, " \
       "c10::BFloat16 const*, int)"
RMS = "void vllm::rms_norm_kernel<c10::BFloat16, 8>(c10::BFloat16*, c10::BFloat16 const*, long, " \
      "c10::BFloat16 const*, float, int, int)"
ADD = "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, " \
      "at::detail::Array<char*, 3>>(int, at::native::CUDAFunctor_add<c10::BFloat16>, at::detail::Array<char*, 3>)"
NVJET = "nvjet_tst_192x16_64x8_4x1_v_bz_splitK_bias_TNT"
SPLITK = "void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, false, " \
         "false>(cublasLt::cublasSplitKParams<float>, float const*, __nv_bfloat16 const*, __nv_bfloat16*)"
FA3_PREP = "void flash::prepare_varlen_num_blocks_kernel<90>(int, int, int, int const*, int const*)"
FA3_MAIN = "void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<flash::" \
           "CollectiveMainloopFwdSm90<2, cute::tuple<cute::C<1>, cute::C<1>, cute::C<1>>, 128>>>>(flash::Params)"
FA3_COMB = "void cutlass::device_kernel<flash::FlashAttnFwdCombine<cute::tuple<cute::C<8>, cute::C<128>>, 7, 256>>(" \
           "flash::FlashAttnFwdCombine<...>::Params)"


class TraceBuilder:
    def __init__(self):
        self.events = [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "python"}}]
        self.ext = 100
        self.corr = 1000

    def op(self, name, ts, dur, tid=1, dims=None, types=None, concrete=None):
        self.ext += 1
        args = {"External id": self.ext, "Record function id": 0}
        if dims is not None:
            args["Input Dims"] = dims
            args["Input type"] = types or ["c10::BFloat16" if d else "" for d in dims]
            args["Concrete Inputs"] = concrete or ["" for _ in dims]
        self.events.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur,
                            "args": args})
        return self.ext

    def kernel(self, name, ts, dur, ext=None, runtime_ext=None, tid=1, stream=7, runtime="cudaLaunchKernel",
               kernel_ext=True, cat="kernel"):
        """One launch: the runtime call on the CPU thread at ts-3 and the kernel at ts on the stream."""
        self.corr += 1
        rt_ext = ext if runtime_ext is None else runtime_ext
        self.events.append({"ph": "X", "cat": "cuda_runtime", "name": runtime, "pid": 1, "tid": tid,
                            "ts": ts - 3, "dur": 2, "args": {"External id": rt_ext, "correlation": self.corr,
                                                             "cbid": 211}})
        kargs = {"queued": 0, "device": 0, "context": 1, "stream": stream, "correlation": self.corr,
                 "registers": 32, "grid": [132, 1, 1], "block": [128, 1, 1]}
        if kernel_ext and ext is not None:
            kargs["External id"] = ext
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": 0, "tid": stream, "ts": ts, "dur": dur,
                            "args": kargs})
        # Kineto also writes flow events linking the launch to the kernel.
        self.events.append({"ph": "f", "id": self.corr, "pid": 0, "tid": stream, "ts": ts, "cat": "ac2g",
                            "name": "ac2g", "bp": "e"})

    def dump(self, path, gz=False):
        doc = {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}],
               "traceEvents": self.events, "traceName": str(path), "displayTimeUnit": "ms"}
        text = json.dumps(doc, indent=0)
        if gz:
            import gzip
            with gzip.open(path, "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return path


def decode_step_trace():
    """A hand-made decode step. Kernel times (us) and their expected operators:
    - _C::rms_norm [4, 64] eps 1e-6: RMS 3                         -> rms_norm 3
    - aten::mm: nvjet 20 + split-K reduce 4 (kernel args carry no External id; the runtime launch does)
                                                                   -> gemm 24 (one launch)
    - _C::fused_add_rms_norm: a generic add kernel 5, found by time containment (no ids match)
                                                                   -> fused_add_rms_norm 5
    - vllm::unified_attention_with_output: FA3 prepare 1 + main 30 + combine 2 -> unified_attention 33
    - _C::silu_and_mul out [4, 64], in [4, 128]: SILU 6           -> silu_and_mul 6
    - a CUDA-graph replay inside the attention op: SILU 7, classified by name -> silu_and_mul 7
    - Memcpy HtoD 2                                                -> memcpy/memset 2
    Total 80 us.
    """
    b = TraceBuilder()
    e = b.op("_C::rms_norm", 0, 20, dims=[[4, 64], [4, 64], [64], []], concrete=["", "", "", "1e-06"])
    b.kernel(RMS, 10, 3, ext=e)
    e = b.op("aten::mm", 30, 20, dims=[[4, 64], [64, 256]])
    b.kernel(NVJET, 40, 20, ext=e, kernel_ext=False)
    b.kernel(SPLITK, 61, 4, ext=e, kernel_ext=False)
    b.op("_C::fused_add_rms_norm", 70, 20, dims=[[4, 64], [4, 64], [64], []], concrete=["", "", "", "1e-05"])
    b.kernel(ADD, 80, 5, ext=-1)
    e = b.op("vllm::unified_attention_with_output", 100, 60)
    b.kernel(FA3_PREP, 105, 1, ext=e)
    b.kernel(FA3_MAIN, 107, 30, ext=e)
    b.kernel(FA3_COMB, 138, 2, ext=e)
    b.kernel(SILU, 150, 7, ext=e, runtime="cudaGraphLaunch")
    e = b.op("_C::silu_and_mul", 170, 20, dims=[[4, 64], [4, 128]])
    b.kernel(SILU, 180, 6, ext=e)
    b.kernel("Memcpy HtoD (Pageable -> Device)", 200, 2, ext=None, cat="gpu_memcpy", stream=9)
    b.events.append({"ph": "i", "name": "Iteration Start: PyTorch Profiler", "ts": 0, "pid": 1, "tid": 1, "s": "g"})
    return b


def write_large_trace(path, target_bytes):
    """A long trace written event by event (never held in memory): repeated rms_norm / GEMM / silu
    launches. Returns (kernel count, summed kernel time per kernel name)."""
    n_kernels = 0
    totals = {}
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"schemaVersion": 1, "deviceProperties": [{"id": 0}], "traceEvents": [\n')
        f.write('{"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "python"}}')
        ts, ext, corr, written = 0, 0, 0, 0
        steps = [("_C::rms_norm", RMS, 3), ("aten::mm", NVJET, 20), ("_C::silu_and_mul", SILU, 6)]
        while written < target_bytes:
            for op, kname, dur in steps:
                ext += 1
                corr += 1
                chunk = (
                    f',\n{{"ph": "X", "cat": "cpu_op", "name": "{op}", "pid": 1, "tid": 1, "ts": {ts}, "dur": 30, '
                    f'"args": {{"External id": {ext}, "Record function id": 0, "Sequence number": {ext}}}}}'
                    f',\n{{"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1, '
                    f'"ts": {ts + 5}, "dur": 4, "args": {{"External id": {ext}, "cbid": 211, "correlation": {corr}}}}}'
                    f',\n{{"ph": "X", "cat": "kernel", "name": "{kname}", "pid": 0, "tid": 7, "ts": {ts + 10}, '
                    f'"dur": {dur}, "args": {{"External id": {ext}, "queued": 0, "device": 0, "context": 1, '
                    f'"stream": 7, "correlation": {corr}, "registers": 32, "shared memory": 0, '
                    f'"blocks per SM": 1.0, "warps per SM": 4.0, "grid": [132, 1, 1], "block": [128, 1, 1], '
                    f'"est. achieved occupancy %": 6}}}}'
                    f',\n{{"ph": "f", "id": {corr}, "pid": 0, "tid": 7, "ts": {ts + 10}, "cat": "ac2g", '
                    f'"name": "ac2g", "bp": "e"}}')
                f.write(chunk)
                written += len(chunk)
                ts += 40
                n_kernels += 1
                totals[kname] = totals.get(kname, 0) + dur
        f.write('\n], "traceName": "large", "displayTimeUnit": "ms"}\n')
    return n_kernels, totals

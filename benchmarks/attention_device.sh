#!/usr/bin/env bash
# Attention kernels on a lent GPU: check and time ours against the torch peers, and A/B launch
# tiles through SOLBENCH_ATTENTION_TILES. Files land in $OUT (one tarball), a table is printed last.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
# Peers (fla-core, flag-gems, liger) and pytest travel as wheels in .whl/ (carried by the call).
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site || echo "wheels did not install"
fi
# An A/B against an earlier commit runs that commit's source tree, copied (untracked) to
# benchmarks/ab/<name>/src before the call: `git archive <commit> src | tar x -C benchmarks/ab/<name>`.
tree() { echo $PWD/benchmarks/ab/$1/src:/tmp/site; }
nvidia-smi --query-gpu=name,uuid --format=csv,noheader
G=$(python3 -c "import torch;print('h200' if 'H200' in torch.cuda.get_device_name() else 'h100')")
python3 -m solbench calibrate --use benchmarks/results/$G/calibration.json > $OUT/log_cal.txt 2>&1 || echo calfail
# Records and logs go to $W; after every step they are packed into $OUT/r.tgz, so a call cut at its
# time limit still returns every finished step (the lent machine returns at most 8 files).
W=$(mktemp -d)
pack() { tar czf $OUT/r.tmp -C $W . && mv $OUT/r.tmp $OUT/r.tgz; }
run() { local name=$1; shift; timeout ${TO:-150} python3 -m solbench run "$@" --out $W/$name.jsonl > $W/log_$name.txt 2>&1; echo "$name rc=$?"; pack; }
STEPS=${STEPS:-ua pd tiles}
for step in $STEPS; do case $step in
  ua) TO=${UA_TO:-170} run ua --ops unified_attention --shapes ${UA_SHAPES:-20,21,9,16,24,7} --impls ${UA_IMPLS:-ours_triton,ours_dense,torch_native,sdpa_flash,flex_attention,sdpa_dense,flag_gems} ;;
  uaall) TO=${UA_TO:-240} run ua_all --ops unified_attention --impls ${UA_IMPLS:-ours_triton,ours_dense,torch_native,sdpa_flash,flex_attention,sdpa_dense,flag_gems} ;;  # every shape (#21, #22)
  jit) # issue 28: both GLU backends and the peers in one run, the exact-math side, the PDL chain, compile times
    TO=${JIT_TO:-200} run glu_family --ops silu_and_mul,gelu_and_mul,gelu_tanh_and_mul,swiglu_oai --impls ours_triton,ours_cuda,torch_compile,torch_eager,liger
    SOLBENCH_CUDA_FAST_MATH=0 TO=90 run glu_cuda_exact --ops silu_and_mul,gelu_and_mul,gelu_tanh_and_mul,swiglu_oai --impls ours_cuda
    timeout 120 python3 -m solbench.pdl_chain --out $W/pdl_chain.jsonl > $W/log_pdl.txt 2>&1; echo "pdl rc=$?"; cat $W/log_pdl.txt | tail -8
    timeout 90 python3 -m solbench.kernels.cuda > $W/jit_compile.jsonl 2> $W/log_jit_compile.txt; echo "jit compile rc=$?"; cat $W/jit_compile.jsonl; pack ;;
  pd) TO=${PD_TO:-200} run pd --ops mla_decode_attention,paged_attention_decode --impls ${PD_IMPLS:-ours_triton,torch_native,torch_compile} ;;
  pd1) SOLBENCH_DECODE_SPLITS=1 TO=${PD_TO:-200} run pd_onepass --ops mla_decode_attention,paged_attention_decode --impls ours_triton ;;  # split-KV A/B
  af) TO=${AF_TO:-150} run af --ops attention_forward --shapes ${AF_SHAPES:-4,17,9} --impls ours_triton,torch_native,sdpa_flash,flex_attention,sdpa_dense,flag_gems ;;
  gemm) TO=${GEMM_TO:-150} run bsm --ops block_scaled_mm --impls ours_triton,torch_native,torch_compile,flag_gems --shapes ${GEMM_SHAPES:-0,5,10,14,20} ;;
  rest) TO=${REST_TO:-120} run rest --ops ${REST_OPS:-reshape_and_cache,topk_filter,fused_qkv_rope,mrope,linear_sigmoid_mul} --impls ours_triton,torch_eager --max-shapes ${REST_SHAPES:-3} ;;
  linear) TO=${LIN_TO:-90} run linear --ops gated_delta_rule_update,causal_conv1d,chunk_gated_delta_rule_state,chunk_delta_rule_output --impls ${LIN_IMPLS:-ours_triton,torch_eager,fla,fla_chunk} --max-shapes ${LIN_SHAPES:-2} ;;
  moe) TO=${MOE_TO:-120} run moe --ops fused_moe,fp8_blockscale_fused_moe,moe_topk_gating_softmax,moe_align_block_size,moe_count_and_sort,moe_sum_reduce --impls ${MOE_IMPLS:-ours_triton,torch_eager,flag_gems} --max-shapes ${MOE_SHAPES:-3} ;;
  rest24) # issue 24's bar: every shape of the rest of the catalog with every runnable peer, one run (gated_delta_rule_update is
          # in changed_contracts.jsonl); torch_compile compiles each shape cold, so this is the long step
    TO=${REST24_TO:-560} run rest24 --ops ${REST24_OPS:-reshape_and_cache,topk_filter,fused_qkv_rope,causal_conv1d,mrope,linear_sigmoid_mul,chunk_gated_delta_rule_state,chunk_delta_rule_output} \
      --impls ours_triton,torch_eager,torch_compile,flag_gems,liger,fla ;;
  truth2) # issue 21's last re-measure: the operators whose SOL changed when overlapping paths began to combine by max,
          # every shape (H100 files hold 5 of 24 block_scaled_mm shapes, 3 of 23 fused_moe, part of attention_forward)
    TO=${TRUTH2_TO:-560} run truth2 --ops ${TRUTH2_OPS:-block_scaled_mm,fused_moe,fp8_blockscale_fused_moe,attention_forward} \
      --impls ${TRUTH2_IMPLS:-ours_triton,torch_native,torch_compile,torch_eager,flag_gems,sdpa_flash,sdpa_dense} ;;
  truth) TO=${TRUTH_TO:-300} run truth --ops ${TRUTH_OPS:-fused_qkv_rope,reshape_and_cache,linear_sigmoid_mul,causal_conv1d,gated_delta_rule_update} --impls ours_triton,torch_eager,fla,fla_chunk ;;  # the operators whose contract or cost changed (#21), every shape
  routing) TO=${ROUTING_TO:-120} run routing --ops moe_topk_gating_softmax,moe_align_block_size,moe_count_and_sort --impls ours_triton,flag_gems,torch_eager ;;
  uab) for i in 1 2; do  # unified: the previous commit's kernel against this one, each twice
         PYTHONPATH=$(tree base) TO=90 run uab_base_$i --ops unified_attention --shapes ${UAB_SHAPES:-20,21,24,9,0,16,7} --impls ours_triton
         peers=${UAB_PEERS:-ours_dense,sdpa_dense}; [ $i = 1 ] && peers=${UAB_PEERS1:-ours_dense,sdpa_dense,flag_gems,sdpa_flash,flex_attention,torch_native}
         TO=200 run uab_new_$i --ops unified_attention --shapes ${UAB_SHAPES:-20,21,24,9,0,16,7} --impls ours_triton,$peers; done
       for t in ${UAB_TILES:-128,128,8,3 128,64,8,2 64,64,4,3 64,128,4,2}; do
         SOLBENCH_ATTENTION_TILES=$t TO=60 run uab_tiles_${t//,/_} --ops unified_attention --shapes 9,0,16 --impls ours_triton; done ;;
  pdab) for i in 1 2; do  # paged decode: the kernel of the committed H100 records against this one
          PYTHONPATH=$(tree pd0) TO=60 run pdab_old_$i --ops paged_attention_decode --impls ours_triton
          TO=60 run pdab_new_$i --ops paged_attention_decode --impls ours_triton; done
        for t in ${PDAB_TILES:-16,64,4,1 16,64,4,2 16,64,2,1 16,64,2,3 16,32,2,2}; do
          SOLBENCH_ATTENTION_TILES=$t TO=60 run pdab_t_${t//,/_} --ops paged_attention_decode --impls ours_triton; done ;;
  gemmab) # Launch A/B of the fp8 GEMMs, candidate k of each group in one process (the groups' switches
          # are separate: SOLBENCH_BLOCK_FP8 for block_scaled_mm #0/#12 (and #2, which --shapes also
          # picks), SOLBENCH_MOE_GEMM1/2 for the sorted MoE #0, SOLBENCH_MOE_DECODE1/2 for
          # decode #2); k=0 is the heuristics. Each side twice, alternating; flag_gems once (k0_1).
    GAB=("" \
      "SOLBENCH_BLOCK_FP8=split_k=2 SOLBENCH_MOE_DECODE1=num_warps=8" \
      "SOLBENCH_BLOCK_FP8=split_k=4,num_stages=3,programs_per_sm=3 SOLBENCH_MOE_GEMM1=num_stages=4 SOLBENCH_MOE_DECODE1=block_k=512" \
      "SOLBENCH_BLOCK_FP8=block_m=128,num_warps=8,programs_per_sm=1 SOLBENCH_MOE_GEMM2=num_stages=4 SOLBENCH_MOE_DECODE2=block_k=1024" \
      "SOLBENCH_BLOCK_FP8=block_m=128,num_warps=8,split_k=2,programs_per_sm=1 SOLBENCH_MOE_GEMM2=block_n=256 SOLBENCH_MOE_DECODE1=num_warps=8 SOLBENCH_MOE_DECODE2=block_k=512" \
      "SOLBENCH_BLOCK_FP8=block_m=128,num_warps=8,num_stages=3,split_k=4 SOLBENCH_MOE_GEMM2=num_warps=4,num_stages=4 SOLBENCH_MOE_DECODE1=block_n=16,block_k=512")
    for i in 1 2; do for k in ${GAB_K:-0 1 2 3 4 5}; do
      echo "${GAB[$k]:-heuristics}" > $W/gab_k$k.env
      impls=ours_triton; [ "$k$i" = 01 ] && impls=ours_triton,flag_gems  # the peer once, in the first run
      ([ -n "${GAB[$k]}" ] && export ${GAB[$k]}; TO=${GAB_TO:-90} run gab_k${k}_$i --ops block_scaled_mm,fp8_blockscale_fused_moe --shapes 0,2,12 --impls $impls)
    done; done ;;
  gatingab) # top-k gating launches (SOLBENCH_TOPK_SOFTMAX=block_t,num_warps) on the long shapes, each twice; flag_gems once
    for i in 1 2; do for c in default ${GATING_CANDIDATES:-1,1 2,1}; do
      impls=ours_triton; [ "$c$i" = default1 ] && impls=ours_triton,flag_gems
      ([ $c != default ] && export SOLBENCH_TOPK_SOFTMAX=$c; TO=60 run gating_${c//,/_}_$i --ops moe_topk_gating_softmax --shapes 6,7,8,9 --impls $impls)
    done; done ;;
  chunkab) # chunk-state launches (SOLBENCH_CHUNK_STATE=block_v,num_warps,num_stages) against the rule, each twice; fla once
    for i in 1 2; do for c in default ${CHUNK_CANDIDATES:-32,4,2 64,4,2 32,4,3 64,8,2}; do
      impls=ours_triton; [ "$c$i" = default1 ] && impls=ours_triton,fla
      ([ $c != default ] && export SOLBENCH_CHUNK_STATE=$c; TO=90 run chunk_${c//,/_}_$i --ops chunk_gated_delta_rule_state --shapes ${CHUNK_SHAPES:-0,1,7,8,10,20,24} --impls $impls)
    done; done ;;
  convab) # causal_conv1d tiles (SOLBENCH_CONV=block_t,block_d,num_warps) on the large prefills, each twice
    for i in 1 2; do for c in default ${CONV_CANDIDATES:-64,64,4 128,32,4 128,64,8 64,128,8}; do
      ([ $c != default ] && export SOLBENCH_CONV=$c; TO=60 run conv_${c//,/_}_$i --ops causal_conv1d --shapes ${CONV_SHAPES:-4,6,7,8} --impls ours_triton)
    done; done ;;
  decodeab) # paged decode: one pass over a whole short context in one key tile (SOLBENCH_DECODE_SPLITS=1 with
            # SOLBENCH_ATTENTION_TILES=block_m,block_n,warps,stages) against the rule's 32-key split launches, each twice
    for i in 1 2; do for c in default ${DECODE_CANDIDATES:-1:16,128,4,1 1:16,128,4,2 1:16,64,4,2 1:16,128,8,1}; do
      ([ $c != default ] && export SOLBENCH_DECODE_SPLITS=${c%%:*} SOLBENCH_ATTENTION_TILES=${c#*:}
       TO=60 run decode_${c//[:,]/_}_$i --ops paged_attention_decode --shapes ${DECODE_SHAPES:-1,3,4,5,6,7} --impls ours_triton)
    done; done ;;
  splitsab) # decode split counts (SOLBENCH_DECODE_SPLITS) against decode_splits' rule, each twice
    for i in 1 2; do for c in default ${SPLITS_LIST:-2 4 16}; do
      ([ $c != default ] && export SOLBENCH_DECODE_SPLITS=$c; TO=60 run splits_${c}_$i --ops mla_decode_attention,paged_attention_decode --impls ours_triton)
    done; done ;;
  gputests) timeout ${GT_TO:-150} python3 -m pytest -q -p no:cacheprovider --maxfail=30 ${GT_TESTS:-tests/eval tests/test_jit_cuda_gpu.py tests/test_library.py tests/ops/test_attention_kernels.py} > $W/log_gputests.txt 2>&1
        echo "gputests rc=$?"; tail -25 $W/log_gputests.txt; pack ;;
  aftiles) n=0; for t in ${AF_TILES:-64,64,4,2 128,64,8,2}; do  # attention_forward's tiles (each listed tile its own file)
           n=$((n + 1)); SOLBENCH_ATTENTION_TILES=$t TO=60 run aftiles_${t//,/_}_$n --ops attention_forward --shapes ${AF_TILE_SHAPES:-1,14} --impls ours_triton; done ;;
  tiles) n=0; for t in ${TILES:-128,128,8,4 128,64,8,3 64,128,4,3}; do  # a tile listed twice runs twice (its own file each time)
           n=$((n + 1)); SOLBENCH_ATTENTION_TILES=$t TO=60 run tiles_${t//,/_}_$n --ops unified_attention --shapes ${TILE_SHAPES:-20,21} --impls ours_triton; done ;;
esac; done
pack
python3 - <<'PY'
import json, os, tarfile
t = tarfile.open(os.environ['OUT'] + '/r.tgz')
for m in sorted(t.getmembers(), key=lambda m: m.name):
    if not m.name.endswith('.jsonl'):
        continue
    for line in t.extractfile(m).read().decode().splitlines():
        r = json.loads(line)
        if 'op' not in r:  # the PDL chain and the compile times print themselves above
            continue
        print(m.name[2:-6], r['op'][:8], r['shape_id'], r['impl'][:14], r['status'], r.get('time_us') and round(r['time_us'], 1),
              r.get('s_achievable') and round(r['s_achievable'], 3), (r.get('reason') or '')[:80],
              (r.get('impl_facts') or {}).get('sdpa_backend', ''))
PY

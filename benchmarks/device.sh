#!/usr/bin/env bash
# How the committed GPU results are produced: run on a GPU machine from the repository root as
#   bash benchmarks/device.sh GPU STEP [STEP ...]
# GPU names the results folder (benchmarks/results/GPU/). Every step writes there, or, when $OUT is
# set (a lent machine whose files are fetched back from $OUT), into $OUT directly, so that a command
# killed at its time limit still returns every record written so far; files a step resumes from are
# first copied from benchmarks/results/GPU/. A newcomer's full pass on a new GPU:
#   bash benchmarks/device.sh GPU calibrate tune sweep glu repeat gputests eval
# then `python benchmarks/performance_tables.py --doc > docs/PERFORMANCE.md`. Steps:
#   calibrate        measure copy bandwidth / matmul rates / launch floor (or adopt GPU/calibration.json)
#   copycurve        add the copy-by-size curve (`calibrate --by-size`) to GPU/calibration.json
#   tune[:SECONDS]   `solbench tune`: tuned launch table -> GPU/tuned.json (+ the per-candidate log;
#                    TUNE_CONTINUE=1 continues the committed log's budgeted tune); ship it as
#                    src/solbench/runtime/tuned/<device>.json
#   sweep[:SECONDS]  `solbench run` on the whole catalog into GPU/sweep.jsonl (resumable; budgeted)
#   glu[:SECONDS]    the GLU variants (gelu, gelu_tanh, swiglu) into GPU/glu_variants.jsonl
#   repeat[:SECONDS] silu_and_mul and the 9 norm/quant ops again into GPU/repeat.jsonl (the second
#                    run: `solbench compare`, and the both-runs table of docs/PERFORMANCE.md)
#   tableab[:S]      ours on TABLE_OPS (TABLE_SHAPES) with the packaged tuned table and with a copy changed by TABLE_SET /
#                    TABLE_DROP (benchmarks/table_variant.py): table_packaged.jsonl / table_variant.jsonl; or with
#                    several copies in one pass (TABLE_VARIANTS='LABEL::SETS|...'): table_LABEL.jsonl each.
#                    An A/B of a table entry: record the verdict in docs/DECISIONS.md, then move the files out
#                    (benchmarks/results/ARCHIVE.md)
#   gputests         the GPU-only tests (custom ops under torch.compile / CUDA graphs, eval integrity)
#   eval             `solbench eval` of examples/candidates/silu_and_mul_ours_triton.py against
#                    ours_triton and torch_compile, timed alike (their records from repeat.jsonl)
# FRESH=sweep.jsonl,repeat.jsonl starts those files empty instead of resuming them.
# A lent machine's tool may return few files from $OUT: pack them after the steps, under a
# timeout that kills the steps' process group first:
#   timeout 540 bash benchmarks/device.sh h200 ...; tar czf /tmp/r.tgz -C $OUT . && rm -rf $OUT/* && mv /tmp/r.tgz $OUT/
# No network is needed: the package runs from src/ (python -m solbench); optional peers (liger) are
# installed from .whl/ when it exists.
set -uo pipefail
cd "$(dirname "$0")/.."
gpu=${1:?usage: benchmarks/device.sh GPU STEP [STEP ...]}
shift
res=benchmarks/results/$gpu
work=${OUT:-$res}
mkdir -p "$res" "$work"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
sb() { python3 -m solbench "$@"; }
# w FILE sets $wf, the working copy of a results file (no subshell, so $started persists):
# resumed from the committed one when there is one, unless FRESH (a comma-separated list of file
# names) names it: then it starts empty (in place, the committed file is moved to FILE.prev).
started=","
w() {
  if [[ ",${FRESH:-}," == *",$1,"* ]]; then
    if [[ "$started" != *",$1,"* ]]; then  # once per invocation: a second step resumes the first
      started="$started$1,"
      if [ "$work" = "$res" ] && [ -f "$res/$1" ]; then mv "$res/$1" "$res/$1.prev"; fi
    fi
  elif [ "$work" != "$res" ] && [ -f "$res/$1" ] && [ ! -f "$work/$1" ]; then cp "$res/$1" "$work/$1"; fi
  wf="$work/$1"
}
# ab VAR PREFIX OPS MODE...: ours_triton on OPS once per MODE, each in its own process with VAR=MODE,
# into PREFIX_MODE.jsonl (PREFIX_MODE_again.jsonl when the step already ran in this invocation, so
# `tableab tableab` is two runs): an A/B within one call.
ab_done=","  # the PREFIX_MODE files ab wrote in this invocation
# A MODE of the form LABEL=VALUE names the files by LABEL and sets VAR=VALUE (tableab's table paths);
# AB_SHAPES (a --shapes list) narrows the runs.
ab() {
  local var=$1 prefix=$2 ops=$3 mode label out
  shift 3
  for mode in "$@"; do
    label=${mode%%=*}; [[ "$mode" == *=* ]] && mode=${mode#*=}
    out="$work/${prefix}_$label"
    if [[ "$ab_done" == *",$out,"* ]]; then out="${out}_again"; else ab_done="$ab_done$out,"; fi
    env "$var=$mode" python3 -m solbench run --ops "$ops" --impls ours_triton --out "$out.jsonl" \
      ${AB_SHAPES:+--shapes "$AB_SHAPES"} ${budget:+--time-budget "$budget"} >"$out.log" 2>&1 || status=1
    tail -n 1 "$out.log"
  done
}
# table_copy LABEL SETS DROPS (tableab): a copy of $base with the ';'-separated SETS set and DROPS
# dropped (benchmarks/table_variant.py), written to PREFIX_LABEL.json and added to $modes as LABEL.
table_copy() {
  local x xs a=()
  IFS=';' read -ra xs <<<"$2"; for x in ${xs[@]+"${xs[@]}"}; do a+=(--set "$x"); done
  IFS=';' read -ra xs <<<"$3"; for x in ${xs[@]+"${xs[@]}"}; do a+=(--drop "$x"); done
  python3 benchmarks/table_variant.py --base "$base" ${a[@]+"${a[@]}"} --out "$work/${tprefix}_$1.json" \
    && modes+=("$1=$work/${tprefix}_$1.json") || status=1
}
status=0
for step in "$@"; do
  name=${step%%:*}; budget=${step#*:}; [ "$budget" = "$step" ] && budget=""
  echo "=== $name ${budget:+(budget ${budget}s) }$(date +%T)"
  case $name in
    calibrate)
      w calibration.json; cal=$wf
      if [ -f "$cal" ] && sb calibrate --use "$cal"; then :; else
        sb calibrate --force && python3 -c "import json; from solbench.core import hardware as h; \
print(json.dumps(h.load_calibration(h.device_key()), indent=1))" >"$cal" || status=1
      fi ;;
    copycurve)
      w calibration.json; cal=$wf
      { sb calibrate --use "$cal" --by-size && sb calibrate --json >"$cal.new" && mv "$cal.new" "$cal"; } || status=1 ;;
    tune)
      # TUNE_OPS (comma-separated) tunes only those operators' keys, TUNE_KEYS only the kernel keys
      # matching its patterns (e.g. '*@few_rows'); the others keep their entries.
      # TUNE_CONTINUE=1 skips the keys the committed tune_log.jsonl measured (a budgeted tune's
      # second part) and logs to tune_log_continued.jsonl.
      log="$work/tune_log.jsonl"; skip=()
      if [ -n "${TUNE_CONTINUE:-}" ]; then log="$work/tune_log_continued.jsonl"; skip=(--skip-measured-in "$res/tune_log.jsonl"); fi
      sb tune ${TUNE_OPS:+--ops "$TUNE_OPS"} ${TUNE_KEYS:+--keys "$TUNE_KEYS"} ${skip[@]+"${skip[@]}"} --out "$work/tuned.json" --log "$log" \
        ${budget:+--time-budget "$budget"} || status=1 ;;
    sweep)
      # REMEASURE_OPS (comma-separated) measures those operators again, the rest of the file reused.
      w sweep.jsonl; sb run --out "$wf" ${REMEASURE_OPS:+--remeasure-ops "$REMEASURE_OPS"} ${budget:+--time-budget "$budget"} \
        >"$work/sweep.log" 2>&1 || status=1
      tail -n 60 "$work/sweep.log" ;;
    glu)
      # GLU_REMEASURE_OPS (comma-separated) measures those variants again, the rest of the file reused;
      # GLU_SHAPES (a --shapes list) narrows the run, and the re-measurement, to those shapes.
      w glu_variants.jsonl; sb run --ops gelu_and_mul,gelu_tanh_and_mul,swiglu_oai --out "$wf" ${GLU_SHAPES:+--shapes "$GLU_SHAPES"} \
        ${GLU_REMEASURE_OPS:+--remeasure-ops "$GLU_REMEASURE_OPS"} ${budget:+--time-budget "$budget"} >"$work/glu.log" 2>&1 || status=1
      tail -n 20 "$work/glu.log" ;;
    repeat)
      # Every operator of issues #2 and #7, so a fresh repeat (with glu) re-measures both bars.
      # REPEAT_REMEASURE_OPS (comma-separated) measures those again, the rest of the file reused.
      w repeat.jsonl; sb run --ops silu_and_mul,rms_norm,fused_add_rms_norm,fused_qk_rmsnorm,gated_rms_norm,l2_norm,layer_norm,fused_rmsnorm_quant,fp8_dynamic_per_token_quant,per_token_group_quant_fp8 \
        --out "$wf" ${REPEAT_REMEASURE_OPS:+--remeasure-ops "$REPEAT_REMEASURE_OPS"} ${budget:+--time-budget "$budget"} \
        >"$work/repeat.log" 2>&1 || status=1
      tail -n 5 "$work/repeat.log" ;;
    gputests)
      # -v prints each verdict as it happens, so a run cut off at its budget still says what failed;
      # the per-test limit (pytest-timeout, where installed) keeps one hang from eating the budget.
      pt_timeout=$(python3 -c "import pytest_timeout" 2>/dev/null && echo "--timeout=90")
      # GPUTESTS (space-separated test paths) narrows the run, e.g. to the files that failed last time.
      timeout "${budget:-300}" python3 -m pytest -v --tb=short -rfE -p no:cacheprovider $pt_timeout ${GPUTESTS:-tests/test_gpu_timing.py tests/test_glu.py tests/ops/test_rms_norm.py \
        tests/ops/test_fused_add_rms_norm.py tests/ops/test_fused_qk_rmsnorm.py tests/ops/test_fused_rmsnorm_quant.py \
        tests/ops/test_fp8_dynamic_per_token_quant.py tests/ops/test_per_token_group_quant_fp8.py tests/eval \
        tests/test_tuning.py} >"$work/gputests.log" 2>&1 || status=1
      grep -E "FAILED|ERROR|passed|failed" "$work/gputests.log" | tail -n 30 ;;
    tableab)
      # One tuned entry with and without (benchmarks/table_variant.py): TABLE_SET ('KERNEL:N=JSON',
      # several separated by ';') and TABLE_DROP ('KERNEL:N;...') change a copy of the packaged table
      # (TABLE_BASE: another table);
      # ours on TABLE_OPS (TABLE_SHAPES narrows) with the packaged table, then with the copy.
      base=${TABLE_BASE:-$(python3 -c "from solbench.runtime import device_key, tuning; print(tuning.packaged_table_path(device_key()))")}
      # TABLE_VARIANTS instead times several copies in one pass: 'LABEL::SETS|LABEL::SETS' (SETS as
      # TABLE_SET), into PREFIX_LABEL.jsonl each, the packaged table first and again last (drift).
      # TABLE_PREFIX (default table) names the files, so two tableab passes of one call keep theirs apart.
      tprefix=${TABLE_PREFIX:-table}; modes=(packaged=)
      if [ -n "${TABLE_VARIANTS:-}" ]; then
        IFS='|' read -ra variants <<<"$TABLE_VARIANTS"
        for v in "${variants[@]}"; do table_copy "${v%%::*}" "${v#*::}" ""; done
        modes+=(packaged=)
      else
        table_copy variant "${TABLE_SET:-}" "${TABLE_DROP:-}"
      fi
      AB_SHAPES=${TABLE_SHAPES:-} ab SOLBENCH_TUNED_TABLE "$tprefix" "${TABLE_OPS:?tableab needs TABLE_OPS}" "${modes[@]}" ;;
    eval)
      # Like for like: the exported kernel is timed by run's rule (graph replay; its allocated
      # outputs rotate with the inputs, as ours' out= buffers do), and ours_triton's and
      # torch_compile's records come from this run's repeat.jsonl when there is one. vs_ours_triton
      # in the records is then the reproduction ratio (issue #6). Eval extends the baselines file
      # it is given: a copy.
      rp="$([ -f "$work/repeat.jsonl" ] && echo "$work/repeat.jsonl" || echo "$res/repeat.jsonl")"
      : >/tmp/eval_baselines.jsonl
      [ -f "$rp" ] && python3 -c "import json,sys; [print(l, end='') for l in open(sys.argv[1]) if json.loads(l)['op'] == 'silu_and_mul']" \
        "$rp" >/tmp/eval_baselines.jsonl
      sb eval examples/candidates/silu_and_mul_ours_triton.py --op silu_and_mul --baselines ours_triton,torch_compile \
        --baselines-from /tmp/eval_baselines.jsonl \
        --out "$work/eval_silu_and_mul.jsonl" >"$work/eval.log" 2>&1 || status=1
      tail -n 50 "$work/eval.log" ;;
    *) echo "unknown step $name"; status=2 ;;
  esac
done
echo "=== done $(date +%T) status $status"
exit $status

set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,clocks.sm --format=csv,noheader
python3 -c "import triton,torch;print('triton',triton.__version__,'torch',torch.__version__)"
G=$(python3 -c "import torch;print('h200' if 'H200' in torch.cuda.get_device_name() else 'h100')")
python3 -m solbench calibrate --use benchmarks/results/$G/calibration.json > $OUT/log_cal.txt 2>&1 || echo calfail
run() { local name=$1; shift; timeout ${TO:-150} python3 -m solbench run "$@" --out $OUT/$name.jsonl > $OUT/log_$name.txt 2>&1; echo "$name rc=$?"; }
TO=170 run ua --ops unified_attention --shapes 20,21,7,9,16,3,15,23,24 --impls ours_triton,torch_native,sdpa_flash,flex_attention,sdpa_dense
TO=90 run pd --ops paged_attention_decode,mla_decode_attention --impls ours_triton,torch_native,torch_compile
TO=120 run af --ops attention_forward --shapes 0,4,9,17,20 --impls ours_triton,torch_native,sdpa_flash,flex_attention,sdpa_dense
for t in 128,128,8,3 64,64,4,3 128,64,8,2 128,32,4,4; do SOLBENCH_ATTENTION_TILES=$t TO=60 run tiles_${t//,/_} --ops unified_attention --shapes 20,21 --impls ours_triton; done
cd $OUT && tar czf /tmp/r.tgz . && rm -rf $OUT/* && mv /tmp/r.tgz $OUT/
python3 - <<'PY'
import json,tarfile,io,os
t=tarfile.open(os.environ['OUT']+'/r.tgz')
for m in t.getmembers():
    if not m.name.endswith('.jsonl'): continue
    for line in t.extractfile(m).read().decode().splitlines():
        r=json.loads(line)
        print(m.name[2:-6], r['op'][:8], r['shape_id'], r['impl'][:14], r['status'], r.get('time_us') and round(r['time_us'],1), r.get('s_achievable') and round(r['s_achievable'],3), (r.get('reason') or '')[:90], (r.get('impl_facts') or {}).get('sdpa_backend',''))
PY

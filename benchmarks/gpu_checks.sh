#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine with a short lease (benchmarks/README,
# "gpu_checks.sh"): one call of under 8 minutes that ends with ONE table,
# design | frames/s | x authors | peak memory, and a line per check.
#
#   bash benchmarks/gpu_checks.sh [LOG_DIR]        # logs of each step in LOG_DIR (gpu-logs/)
#
# Steps, each with a time limit (a step that fails or runs out of time is reported and the
# next one runs):
#   1. bench_train.py --all (TRAIN_LIMIT, 300 s): training on tensors (the authors' design,
#      fp32, bf16 + channels_last at batch 10, 32, 64), end to end through the training loop
#      with 8 and 16 loader workers, H.264 encoded per clip or from the variant cache,
#      embedding for the index in fp32 and bf16 at 10, 64 and 256 clips per pass, then
#      torch.compile (batch 10 and 64; end to end at 64); out of time, its last table so far;
#   2. the GPU tests (GPU_TESTS_LIMIT, 60 s): no host synchronisation in a training step
#      (CUDA sync debug mode), the prefetcher on CUDA, GPU FAISS when installed;
#   3. the README's main command on the GPU, 3 epochs (DEMO_LIMIT, 120 s), then a query of a
#      demo test video (bf16 inference).
# SUITE=only runs the whole test suite instead (SUITE_LIMIT, 400 s: a call of its own),
# SUITE=1 after the rest; CUDA_GRAPHS=1 adds a row compiled with CUDA graphs, NO_COMPILE=1
# leaves compiling out.
#
# Python packages the machine lacks can travel as wheels in .whl/ (see benchmarks/README);
# they are installed into /tmp/site first.
set -u
logs=${1:-gpu-logs}
mkdir -p "$logs"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

results=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, one status line
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  local line="$name: rc=$rc in $((SECONDS - t0)) s (limit $limit s)"
  [ "$rc" = 124 ] && line="$line, OUT OF TIME"
  results+=("$line")
  echo "== $line"
  tail -n 12 "$logs/$name.log"
}

nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
"$py" -c "import torch, attribnet.training.loop, faiss, av; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"

if [ "${SUITE:-0}" != only ]; then
extra=()
[ "${CUDA_GRAPHS:-0}" = 1 ] && extra+=(--cuda-graphs)
[ "${NO_COMPILE:-0}" = 1 ] && extra+=(--no-compile)
# BENCH=--quick runs the table at tiny sizes (to check this script on a CPU)
step bench_train "${TRAIN_LIMIT:-300}" "$py" benchmarks/bench_train.py "${BENCH:---all}" \
  --threads 0 "${extra[@]}"
step gpu_tests "${GPU_TESTS_LIMIT:-60}" "$py" -m pytest -q -p no:cacheprovider -m gpu \
  --tb=short -rfE tests/training/test_step.py tests/runtime/test_prefetch.py tests/index/test_index.py
step demo_train "${DEMO_LIMIT:-120}" "$py" -m attribnet.train recipes/demo.yaml --overwrite \
  --set train.epochs=3
step demo_query 30 "$py" -m attribnet.query --index indexes/demo data/demo/crf23/dfaker/src005.mp4
fi
if [ "${SUITE:-0}" != 0 ]; then
  # one torch thread per worker, the failures' tracebacks at the end of the log; without
  # fastapi (as on the lent machines) the web-app tests cannot be collected: left out then
  skip=()
  "$py" -c "import fastapi" 2>/dev/null ||
    skip=(--ignore tests/serve --ignore tests/cli/test_console_scripts.py)
  OMP_NUM_THREADS=1 step suite "${SUITE_LIMIT:-400}" "$py" -m pytest -q -n 12 -p no:cacheprovider \
    -p no:benchmark -m "not browser" --timeout 300 --tb=short -rfE "${skip[@]}"
fi

echo
[ "${SUITE:-0}" = only ] && { printf '%s\n' "${results[@]}"; tail -n 30 "$logs/suite.log"; exit; }
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
echo "== gpu_checks on ${gpu:-no GPU}: ${SECONDS} s"
table="$logs/bench_train.log"  # the final table, else (a step out of time) the last one so far
if grep -q '^### DMA-STA throughput' "$table"; then
  sed -n '/^### DMA-STA throughput/,$p' "$table"
else
  last=$(grep -n '^### so far' "$table" | tail -n 1 | cut -d: -f1)
  [ -n "$last" ] && tail -n +"$last" "$table"
fi
printf '%s\n' "${results[@]}"
grep -h "best epoch" "$logs/demo_train.log" 2>/dev/null | tail -n 1
tail -n 3 "$logs/demo_query.log" 2>/dev/null

#!/usr/bin/env bash
# The GPU checks of benchmarks/README ("Not measured here"), as one script with a time limit
# per step, for a lent GPU machine with a short lease. Each step's log goes to $1 (default
# gpu-logs/); a step that fails or runs out of time is reported and the next one runs.
#
#   bash benchmarks/gpu_checks.sh [LOG_DIR]
#
# Python packages the machine lacks can travel as wheels in .whl/ (see benchmarks/README);
# they are installed into /tmp/site first. Without faiss-gpu (no CUDA 12 wheels fit a short
# lease) the index is searched on the CPU, so GPU FAISS is not among these checks.
set -u
logs=${1:-gpu-logs}
mkdir -p "$logs"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, report
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s (limit $limit s)"
  tail -n 40 "$logs/$name.log"
}

nvidia-smi -L
"$py" -c "import torch, attribnet.training.loop, faiss, av; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"

# bf16 + channels_last training, the >= 2,500 frames/s check, peak memory, largest batch
step bench_train "${TRAIN_LIMIT:-240}" "$py" benchmarks/bench_train.py --backbone resnet50 \
  --size 224 --batch 10 --end-to-end --workers 8 --memory --threads 0
# the README's main command on the GPU (the CUDA paths of attribnet.training.loop), then a query
# (bf16 inference) on a demo video
step demo_train "${DEMO_LIMIT:-240}" "$py" -m attribnet.train recipes/demo.yaml --overwrite
step demo_query 60 "$py" -m attribnet.query --index indexes/demo data/demo/crf23/dfl/src003.mp4
# the test suite with CUDA visible (code that picks "cuda" when present takes it): one torch
# thread per worker, the failures' tracebacks at the end of the log. Without fastapi (as on
# the lent machines) the web-app tests cannot be collected: they are left out then.
skip=()
"$py" -c "import fastapi" 2>/dev/null ||
  skip=(--ignore tests/test_serve.py --ignore tests/test_browser.py --ignore tests/test_console_scripts.py)
OMP_NUM_THREADS=1 step tests "${TEST_LIMIT:-400}" "$py" -m pytest -v -n 12 -p no:cacheprovider \
  -p no:benchmark -m "not browser" --timeout 300 --tb=short -rfE "${skip[@]}"

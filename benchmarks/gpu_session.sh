#!/usr/bin/env bash
# What a lent GPU runs, as one prepared command (device minutes are few; every start costs one or two).
#
#   1. the CUDA tests (fast paths against the reference, on-the-fly encoder);
#   2. issue 3: encode throughput on the GPU (`encode_throughput.py --skip-cpu --no-compile`), every
#      method including the not-yet-timed `triton_tile` and the fused companding;
#   3. issue 4: the rgb-16x decoder fine-tuned on the GPU with its encoder frozen (latents unchanged), for
#      FT_SECONDS; the result comes back and is scored on the held-out photos on the CPU afterwards:
#          python benchmarks/codec_rd.py --codecs rgb-16x OUT/rgb-16x.safetensors --plot ''
#
# Needs, beside the working tree: the training photos (`python recipes/train_codec.py prepare --out
# .train_data`, then carry .train_data/photos) and, on machines without them, wheels for PyWavelets,
# webdataset (+braceexpand), soundfile (+cffi, pycparser), pytorch-msssim and, for the walloc 1.2.1
# reference, walloc, pytorch-wavelets, diffusers (+importlib_metadata) and setuptools<82, in .whl/.
# Writes at most five files to $OUT (the device tool returns eight): session.log, encode_throughput.json,
# rgb-16x.safetensors, rgb-16x.json, train_log.jsonl.
#
#   OUT=runs/gpu FT_SECONDS=240 FT_BATCH=64 bash benchmarks/gpu_session.sh          # about 9 minutes on an H100/H200
#   SMOKE=1 OUT=/tmp/smoke bash benchmarks/gpu_session.sh               # CPU dry run of every step (~2 min)
set -uo pipefail
OUT=${OUT:-runs/gpu_session}
FT_SECONDS=${FT_SECONDS:-240}
FT_BATCH=${FT_BATCH:-64}
SMOKE=${SMOKE:-0}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

if compgen -G ".whl/*.whl" >/dev/null; then
  stamp "installing carried wheels"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
stamp "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
git log --oneline -1 2>/dev/null || true

if [ "$SMOKE" = 1 ]; then
  DEV=cpu; TESTS="tests/test_fastencode.py -x -q -k sep"; ENC="--skip-gpu --cpu-reps 1 --no-compile"
  FT="--device cpu --batch-size 2 --steps 3"; FT_SETTINGS='"val_size": 2, "val_every": 2'
else
  DEV=cuda; TESTS="-q -m gpu tests/"; ENC="--skip-cpu --no-compile"
  FT="--device cuda --batch-size $FT_BATCH --steps 1000000 --time-budget $FT_SECONDS"
  FT_SETTINGS='"val_size": 32, "val_every": 500'
fi

stamp "CUDA tests"
timeout 180 $PY -m pytest $TESTS -p no:cacheprovider || echo "tests failed (rc $?)"

stamp "encode throughput"
timeout 200 $PY benchmarks/encode_throughput.py $ENC > "$OUT/encode_throughput.json" \
  || echo "encode_throughput failed (rc $?)"

stamp "rgb-16x decoder fine-tune ($DEV)"
if [ -d .train_data/photos ]; then
  rm -rf /tmp/ft
  echo "{\"warmup\": 100, \"progress\": false, $FT_SETTINGS}" > /tmp/ft.json   # train-codec --config keys
  timeout $((FT_SECONDS + 150)) $PY -m walloc_cdl.cli train-codec --init rgb-16x --freeze-encoder \
    --data .train_data/photos --lr 5e-4 --half --config /tmp/ft.json --out /tmp/ft $FT \
    && cp /tmp/ft/rgb-16x.safetensors /tmp/ft/rgb-16x.json "$OUT"/ && cp /tmp/ft/log.jsonl "$OUT/train_log.jsonl" \
    || echo "fine-tune failed (rc $?)"
else
  echo "no .train_data/photos: run 'python recipes/train_codec.py prepare --out .train_data' and carry it"
fi
stamp "done"

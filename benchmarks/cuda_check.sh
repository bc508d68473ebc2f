#!/usr/bin/env bash
# CUDA check of the PyTorch twin (about 1-2 minutes on one H100/H200; needs torch with CUDA).
#
#   bash benchmarks/cuda_check.sh            # from the repository root; writes to $OUT or /tmp
#
# 1. torch-train the "dates" task on cuda for 400 steps (single process), saving a NumPy .safetensors
# 2. the same for 60 steps under torchrun (one process: exercises the nccl process group + DDP)
# 3. a char-GPT on a corpus made of this repository's own text, 300 steps on cuda
# 4. the same dates config for 30 steps on the CPU, for ms/step against cuda
# 5. the dates checkpoint: NumPy logits vs torch CPU vs torch CUDA (max |diff|), and greedy
#    tokens of NumPy (scratchformer.models.decoding) vs the twin on CUDA on 500 held-out dates
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-/tmp/cuda_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
log() { echo; echo "=== $* ==="; }
{
log "environment"
nvidia-smi -L || true
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', \
'| numpy', numpy.__version__)"

COMMON=(--d-model 128 --n-heads 4 --d-ff 512 --layers 3 --batch-size 256 --lr 2e-3 --warmup 50)

log "1. torch-train dates on cuda, 400 steps"
time "$PY" -m scratchformer torch-train --task dates --device cuda --steps 400 "${COMMON[@]}" \
    --log-every 100 --eval-size 500 --out "$OUT/dates_cuda.safetensors"

log "2. torchrun --nproc_per_node=1 (nccl + DDP), reverse, 60 steps"
time torchrun --standalone --nproc_per_node=1 -m scratchformer torch-train --task reverse \
    --device cuda --steps 60 --log-every 20 --eval-size 100 --out "$OUT/reverse_ddp.safetensors"

log "3. char-GPT on the repository's text, cuda, 300 steps"
cat scratchformer/*.py scratchformer/*/*.py docs/*.md 2>/dev/null > "$OUT/corpus.txt" || true
wc -c "$OUT/corpus.txt"
time "$PY" -m scratchformer torch-train --corpus "$OUT/corpus.txt" --device cuda --steps 300 \
    --d-model 256 --n-heads 8 --d-ff 1024 --layers 4 --block-size 128 --batch-size 64 --lr 1e-3 \
    --warmup 50 --log-every 100 --eval-size 100 --out "$OUT/gpt_cuda.safetensors"

log "4. the dates config on the CPU ($(nproc) cores), 30 steps, for ms/step"
time "$PY" -m scratchformer torch-train --task dates --device cpu --steps 30 "${COMMON[@]}" \
    --log-every 10 --eval-size 0 --out ""

log "5. NumPy vs torch CPU vs torch CUDA on the cuda-trained checkpoint"
"$PY" - "$OUT/dates_cuda.safetensors" <<'EOF'
import sys, numpy as np, torch
import scratchformer as sf
from scratchformer.training.checkpoint import load
from scratchformer.data.tasks import get_task, pad_batch
from scratchformer.torch_port import to_torch, greedy_decode as torch_greedy

model, _, state = load(sys.argv[1])
task = get_task(state["task"]["name"], **state["task"]["options"])
src, tgt_in, tgt_out = pad_batch(task.held_out()[:500])
model.eval()
ref = model(src, tgt_in)                                    # NumPy float32
cpu = to_torch(model).eval()
cuda = to_torch(model, device="cuda").eval()
with torch.no_grad():
    lc, lg = cpu(src, tgt_in).numpy(), cuda(src, tgt_in).cpu().numpy()
print(f"max |logits| {np.abs(ref).max():.2f}")
print(f"max |NumPy - torch CPU|  {np.abs(ref - lc).max():.3e}")
print(f"max |NumPy - torch CUDA| {np.abs(ref - lg).max():.3e}")
print(f"max |torch CPU - CUDA|   {np.abs(lc - lg).max():.3e}")
T = tgt_out.shape[1]
a = sf.greedy_decode(model, src, max_len=T)
b = torch_greedy(cuda, src, max_len=T)
same = a.shape == b.shape and bool((a == b).all())
rows = (a == b).all(axis=1).mean() if a.shape == b.shape else float("nan")
print(f"greedy tokens NumPy == torch CUDA: {same} (identical rows {rows:.3f}, shapes {a.shape} {b.shape})")
w = np.zeros((len(src), max(a.shape[1], T)), np.int64); g = w.copy()
w[:, :T], g[:, :a.shape[1]] = tgt_out, a
print(f"NumPy exact match on 500 held-out dates: {(w == g).all(axis=1).mean():.3f}")
EOF
} 2>&1 | tee "$OUT/cuda_check.txt"

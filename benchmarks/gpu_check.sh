#!/usr/bin/env bash
# GPU checks in one run: the gpu-marked tests (xformers vs sdpa parity, auto backend) and a
# kosmos-1.3b forward/backward in bf16 with xformers. Run on a CUDA machine from the repository root.
set -euo pipefail
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" -m pytest -m gpu -v tests
"$PY" - <<'PY'
import time, torch
from toolkit.model import build_model, preset_config
cfg = preset_config("kosmos-1.3b", {"decoder": {"attention": "xformers", "gradient_checkpointing": True}})
with torch.device("cuda"):
    model = build_model(cfg)
ids = torch.randint(7, cfg.decoder.vocab_size, (2, 2048), device="cuda")
for step in range(3):
    torch.cuda.synchronize(); t = time.time()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(ids).loss
    loss.backward()
    torch.cuda.synchronize()
    print(f"kosmos-1.3b fwd+bwd 2x2048 tokens: {time.time() - t:.3f} s, loss {loss.item():.3f}, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
PY

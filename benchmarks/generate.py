"""Greedy generation speed: xmt with its KV cache, xmt re-running the whole sequence each step (no
cache), and Hugging Face `LlamaForCausalLM.generate` with its cache, at the tiny preset's dimensions.

Every run generates exactly `--new` tokens (no early stop) from the same random prompts; tokens/s
counts generated tokens; median over repeats, the rows taking turns within each repeat. Greedy
outputs are compared where the weights are the same: xmt cached vs xmt uncached must be identical
(and HF cached vs HF uncached). xmt and Llama are different architectures (Magneto/xPos vs
RMSNorm/SwiGLU/RoPE), so their tokens are not compared with each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from toolkit.model import build_model, preset_config
from toolkit.model.generation import banned_ids, greedy_search


@torch.no_grad()
def greedy_without_cache(model, ids: torch.Tensor, new: int) -> list[list[int]]:
    """The reference: each step runs the model on the whole sequence so far."""
    banned = banned_ids(model)
    seq = ids
    for _ in range(new):
        logits = model(seq, compute_loss=False).logits[:, -1].float()
        logits[:, banned] = float("-inf")
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    return seq[:, ids.shape[1] :].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=32, help="prompt length in tokens")
    parser.add_argument("--new", type=int, default=64, help="tokens generated per sequence")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = preset_config("tiny", {"vision": {"kind": "none"}})
    d = cfg.decoder
    model = build_model(cfg, seed=0).eval()
    ids = torch.randint(7, d.vocab_size, (args.batch, args.prompt))
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=d.vocab_size,
            hidden_size=d.dim,
            intermediate_size=d.ffn_dim,
            num_hidden_layers=d.layers,
            num_attention_heads=d.heads,
            num_key_value_heads=d.heads,
            max_position_embeddings=d.max_len,
            tie_word_embeddings=True,
            attn_implementation="sdpa",
        )
    ).eval()
    mask = torch.ones_like(ids)

    def hf(use_cache: bool):
        out = llama.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=args.new,
            min_new_tokens=args.new,
            use_cache=use_cache,
            pad_token_id=0,
        )
        return out[:, ids.shape[1] :].tolist()

    runs = {
        "xmt, KV cache": lambda: greedy_search(model, ids, max_new_tokens=args.new, stop_ids=[]),
        "xmt, no cache": lambda: greedy_without_cache(model, ids, args.new),
        "HF generate, KV cache": lambda: hf(True),
        "HF generate, no cache": lambda: hf(False),
    }
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the outputs compared
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    generated = args.batch * args.new
    rows = [
        {"name": name, "tokens_per_s": round(generated / statistics.median(t), 1), "ms_per_step": None}
        for name, t in times.items()
    ]
    for r in rows:
        r["ms_per_step"] = round(1e3 * args.batch / r["tokens_per_s"], 2)
    hf_rate = rows[2]["tokens_per_s"]
    for r in rows:
        r["vs_hf_cached"] = round(r["tokens_per_s"] / hf_rate, 2)
    result = {
        "batch": args.batch,
        "prompt": args.prompt,
        "new": args.new,
        "threads": torch.get_num_threads(),
        "xmt_cache_equals_no_cache": outputs["xmt, KV cache"] == outputs["xmt, no cache"],
        "hf_cache_equals_no_cache": outputs["HF generate, KV cache"] == outputs["HF generate, no cache"],
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"greedy generation, batch {args.batch}, prompt {args.prompt}, {args.new} new tokens, {result['threads']} "
        f"threads, dims {d.layers}L d{d.dim} vocab {d.vocab_size}"
    )
    print(f"{'run':<24}{'tokens/s':>10}{'ms/step':>10}{'vs HF cached':>14}")
    for r in rows:
        print(f"{r['name']:<24}{r['tokens_per_s']:>10,.0f}{r['ms_per_step']:>10.2f}{r['vs_hf_cached']:>14.2f}")
    print(
        f"identical greedy tokens: xmt cached vs uncached {result['xmt_cache_equals_no_cache']}, "
        f"HF cached vs uncached {result['hf_cache_equals_no_cache']}"
    )


if __name__ == "__main__":
    main()

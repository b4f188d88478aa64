"""Train-step throughput of the tiny preset next to Hugging Face LlamaForCausalLM at equal dimensions.

Every number comes from this one process: the same random token batch, forward + backward + AdamW
step, median over repeats after warm-up. Rows: xmt at fp32 (the default), with bf16 autocast, with
torch.compile; xmt on a multimodal batch (text + captions); HF Llama at fp32 and with bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from toolkit.data.format import IMAGE, build_sequence, collate
from toolkit.model import build_model, preset_config


def measure(step, tokens: int, warmup: int, repeats: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(tokens * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def xmt_step(model, batch: dict, bf16: bool):
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optim.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optim.step()

    return step


def hf_step(model, ids: torch.Tensor, bf16: bool):
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optim.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optim.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (slow to compile)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    text_cfg = preset_config("tiny", {"vision": {"kind": "none"}})
    d = text_cfg.decoder
    ids = torch.randint(7, d.vocab_size, (args.batch, args.seq))
    tokens = ids.numel()
    rows = []

    def add(name, rate, precision):
        rows.append({"name": name, "tokens_per_s": round(rate, 1), "precision": precision})

    for bf16 in (False, True):
        model = build_model(text_cfg, seed=0).train()
        add(
            "xmt tiny (text)",
            measure(xmt_step(model, {"input_ids": ids}, bf16), tokens, 2, args.repeats, args.steps),
            "bf16" if bf16 else "fp32",
        )
    if not args.no_compile:
        model = build_model(
            preset_config("tiny", {"vision": {"kind": "none"}, "decoder": {"compile": True}}), seed=0
        ).train()
        add(
            "xmt tiny (text), compiled",
            measure(xmt_step(model, {"input_ids": ids}, False), tokens, 3, args.repeats, args.steps),
            "fp32",
        )
    mm_cfg = preset_config("tiny")
    mm = build_model(mm_cfg, seed=0).train()
    n = mm.num_image_tokens
    caps = [build_sequence([IMAGE, ids[i, :24].tolist()], mm_cfg.tokens, n) for i in range(args.batch)]
    cap_batch = collate(caps, mm_cfg.tokens, images=[torch.randn(1, 3, 32, 32) for _ in caps])
    mm_batch = {
        "input_ids": cap_batch.input_ids,
        "images": cap_batch.images,
        "attention_mask": cap_batch.attention_mask,
    }
    cap_tokens = int(cap_batch.attention_mask.sum())
    add(
        "xmt tiny (caption batch)",
        measure(xmt_step(mm, mm_batch, False), cap_tokens, 2, args.repeats, args.steps),
        "fp32",
    )

    llama_cfg = LlamaConfig(
        vocab_size=d.vocab_size, hidden_size=d.dim, intermediate_size=d.ffn_dim, num_hidden_layers=d.layers,
        num_attention_heads=d.heads, num_key_value_heads=d.heads, max_position_embeddings=d.max_len,
        tie_word_embeddings=True, attn_implementation="sdpa",
    )  # fmt: skip
    for bf16 in (False, True):
        llama = LlamaForCausalLM(llama_cfg).train()
        add(
            "HF LlamaForCausalLM",
            measure(hf_step(llama, ids, bf16), tokens, 2, args.repeats, args.steps),
            "bf16" if bf16 else "fp32",
        )

    hf = {r["precision"]: r["tokens_per_s"] for r in rows if r["name"] == "HF LlamaForCausalLM"}
    for r in rows:
        r["vs_hf_fp32"] = round(r["tokens_per_s"] / hf["fp32"], 2)
        r["vs_hf_same_precision"] = round(r["tokens_per_s"] / hf[r["precision"]], 2)
    result = {"batch": args.batch, "seq": args.seq, "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"train step, batch {args.batch} x {args.seq}, {result['threads']} threads, dims {d.layers}L d{d.dim} ffn{d.ffn_dim} vocab{d.vocab_size}"
    )
    print(f"{'model':<30}{'precision':>10}{'tokens/s':>12}{'vs HF fp32':>12}{'vs HF same':>12}")
    for r in rows:
        print(
            f"{r['name']:<30}{r['precision']:>10}{r['tokens_per_s']:>12,.0f}{r['vs_hf_fp32']:>12.2f}{r['vs_hf_same_precision']:>12.2f}"
        )


if __name__ == "__main__":
    main()

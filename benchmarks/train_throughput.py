"""Train-step throughput of the tiny preset next to Hugging Face LlamaForCausalLM at equal dimensions.

Every number comes from this one process: the same random token batch; forward, loss, backward,
clipping and an AdamW step (the trainer's optimizer for both models); median over repeats after
warm-up, the rows taking turns. Rows: xmt in fp32 and in bf16 autocast (`precision: auto` picks one
of the two for this machine: the default-settings ratio uses it), compiled with torch.compile, on a
multimodal batch (captions with images); HF Llama in fp32 (its default) and in bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from toolkit.data.format import IMAGE, build_sequence, collate
from toolkit.model import build_model, preset_config
from toolkit.train.config import OptimConfig, StageConfig
from toolkit.train.optim import build_optimizer
from toolkit.train.precision import resolve_precision


def measure_round_robin(steps_by_row: dict, tokens: dict, warmup: int, repeats: int, steps: int) -> dict:
    """Median tokens/s per row. Rows take turns within each repeat, so that a slow spell of a shared
    machine falls on every row alike instead of on whichever row ran at that moment."""
    for step in steps_by_row.values():
        for _ in range(warmup):
            step()
    rates = {name: [] for name in steps_by_row}
    for _ in range(repeats):
        for name, step in steps_by_row.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            rates[name].append(tokens[name] * steps / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def train_step(model, forward, bf16: bool):
    """One optimizer step as `xmt train` takes it: AdamW from the trainer (fused, decay on matrices
    only), autocast when bf16, gradient clipping. HF Llama gets the very same step."""
    optim = build_optimizer(model, OptimConfig(), StageConfig(lr=1e-4))

    def step():
        optim.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optim.step()

    return step


def xmt_step(model, batch: dict, bf16: bool):
    # As the trainer calls it: the loss fused with the output layer, no logits kept.
    return train_step(model, lambda: model(**batch, return_logits=False).loss, bf16)


def hf_step(model, ids: torch.Tensor, bf16: bool):
    return train_step(model, lambda: model(input_ids=ids, labels=ids).loss, bf16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (slow to compile)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    text_cfg = preset_config("tiny", {"vision": {"kind": "none"}})
    d = text_cfg.decoder
    ids = torch.randint(7, d.vocab_size, (args.batch, args.seq))
    default = resolve_precision("auto", "cpu")
    rows, steps, tokens = {}, {}, {}

    def add(key, name, precision, step, n_tokens):
        rows[key] = {"name": name, "precision": precision}
        steps[key], tokens[key] = step, n_tokens

    for precision in ("fp32", "bf16"):
        model = build_model(text_cfg, seed=0).train()
        add(
            f"xmt-{precision}",
            "xmt tiny (text)",
            precision,
            xmt_step(model, {"input_ids": ids}, precision == "bf16"),
            ids.numel(),
        )
    if not args.no_compile:
        compiled = torch.compile(build_model(text_cfg, seed=0).train())
        add(
            "xmt-compiled",
            "xmt tiny (text), torch.compile",
            default,
            xmt_step(compiled, {"input_ids": ids}, default == "bf16"),
            ids.numel(),
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
    add(
        "xmt-captions",
        "xmt tiny (caption batch)",
        default,
        xmt_step(mm, mm_batch, default == "bf16"),
        int(cap_batch.attention_mask.sum()),
    )
    llama_cfg = LlamaConfig(
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
    for precision in ("fp32", "bf16"):
        llama = LlamaForCausalLM(llama_cfg).train()
        add(f"hf-{precision}", "HF LlamaForCausalLM", precision, hf_step(llama, ids, precision == "bf16"), ids.numel())
    rates = measure_round_robin(steps, tokens, args.warmup, args.repeats, args.steps)
    for key, rate in rates.items():
        rows[key]["tokens_per_s"] = round(rate, 1)
    rows = list(rows.values())
    hf = {r["precision"]: r["tokens_per_s"] for r in rows if r["name"] == "HF LlamaForCausalLM"}
    for r in rows:
        r["vs_hf_fp32"] = round(r["tokens_per_s"] / hf["fp32"], 2)
        r["vs_hf_same_precision"] = round(r["tokens_per_s"] / hf[r["precision"]], 2)
    ratio = {
        # xmt at its default CPU precision (`precision: auto`) against HF at its default (fp32)
        "default_settings": round(rates[f"xmt-{default}"] / rates["hf-fp32"], 2),
        "equal_precision_fp32": round(rates["xmt-fp32"] / rates["hf-fp32"], 2),
        "equal_precision_bf16": round(rates["xmt-bf16"] / rates["hf-bf16"], 2),
    }
    result = {
        "batch": args.batch,
        "seq": args.seq,
        "threads": torch.get_num_threads(),
        "default_precision": default,
        "ratio": ratio,
        "rows": rows,
    }
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
    print(
        f"ratio at default settings (xmt precision auto -> {default}, HF fp32): {ratio['default_settings']:.2f}; "
        f"at equal precision: fp32 {ratio['equal_precision_fp32']:.2f}, bf16 {ratio['equal_precision_bf16']:.2f}"
    )


if __name__ == "__main__":
    main()

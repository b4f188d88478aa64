"""Next-token loss fused with the output projection, computed in chunks of rows.

`fused_output_nll(hidden, weight, targets, row_weight)` returns sum_r row_weight[r] * NLL_r of the
logits `hidden @ weight.T` without keeping the (rows, vocab) logits: each chunk's logits are made,
turned into its NLL and the gradient of the logits (softmax - one-hot, scaled by the row weight), and
the gradients for `hidden` and `weight` are accumulated right away, while the chunk is still in cache.
The backward then only scales them by the incoming gradient. On the tiny preset's 2048-way output this
replaces the fp32 copy of the logits, the log-softmax, its backward and the NLL scatter; on the
1.3B preset's 64k vocabulary it is the difference between holding 4 GiB of fp32 logits per 16k tokens
and one chunk of them.

The arithmetic follows autocast: under an autocast region the two matrix products run in its dtype
(as `F.linear` would) and the softmax in fp32; without one, everything is in the inputs' dtype.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

# Elements of one chunk's logits: ~4 MiB of fp32 on the CPU (stays in cache), ~1 GiB on a GPU.
CHUNK_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 28}


def _compute_dtype(t: Tensor) -> torch.dtype:
    device = t.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


class _FusedOutputNLL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, hidden: Tensor, weight: Tensor, targets: Tensor, row_weight: Tensor, chunk: int, groups, group_sums
    ) -> Tensor:
        dtype = _compute_dtype(hidden)
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        needs_grad = want_h or want_w
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.to(dtype)
            w = weight.to(dtype)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(h) if want_h else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if want_w else None
            for start in range(0, h.shape[0], chunk):
                rows = slice(start, start + chunk)
                logp = torch.log_softmax((h[rows] @ w.T).float(), dim=-1)  # (n, V)
                tgt = targets[rows]
                rw = row_weight[rows].float()
                picked = logp.gather(1, tgt[:, None])[:, 0]
                total = total - (picked * rw).sum()
                if group_sums is not None:
                    group_sums.index_add_(0, groups[rows], -(picked * rw))
                if not needs_grad:
                    continue
                # d NLL / d logits = softmax - one_hot(target), per row, times the row's weight.
                g = logp.exp_()
                g.scatter_add_(1, tgt[:, None], torch.full_like(picked[:, None], -1.0))
                g = g.mul_(rw[:, None]).to(dtype)
                if grad_h is not None:
                    grad_h[rows] = g @ w
                if grad_w is not None:
                    grad_w.add_(g.T @ h[rows])
        ctx.save_for_backward(
            grad_h if grad_h is not None else torch.empty(0), grad_w if grad_w is not None else torch.empty(0)
        )
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.has = (grad_h is not None, grad_w is not None)
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        has_h, has_w = ctx.has
        scale = grad_out.float()
        dh = (grad_h.float() * scale).to(ctx.dtypes[0]) if has_h else None
        dw = (grad_w * scale).to(ctx.dtypes[1]) if has_w else None
        return dh, dw, None, None, None, None, None


def fused_output_nll(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    row_weight: Tensor,
    chunk: int | None = None,
    groups: Tensor | None = None,
    group_sums: Tensor | None = None,
):
    """sum_r row_weight[r] * -log softmax(hidden[r] @ weight.T)[targets[r]] as an fp32 scalar.

    hidden (N, dim), weight (V, dim), targets (N,) long, row_weight (N,) (0 = not counted).
    `chunk`: rows per chunk; by default about CHUNK_ELEMENTS logits. With `groups` (N,) long and
    `group_sums` (G,) fp32, each row's weighted NLL is also added to its group's sum (no gradient):
    several streams in one pass keep their own losses."""
    if chunk is None:
        per_chunk = CHUNK_ELEMENTS.get(hidden.device.type, CHUNK_ELEMENTS["cuda"])
        chunk = max(1, per_chunk // weight.shape[0])
    return _FusedOutputNLL.apply(hidden, weight, targets, row_weight, chunk, groups, group_sums)

#!/usr/bin/env python3
"""Regenerates the float64 reference vectors of this folder from PyTorch (see README.md for
each definition). Needs `torch`, `numpy` and `safetensors` (pip), never qornn itself.

    python3 tests/reference/generate.py OUT_DIR [--seed S]
    QORNN_REFERENCE_DIR=OUT_DIR cargo test -p qornn --test reference --test cells --test data

Every test derives its shapes from the files, so new vectors (another seed, other sizes set
below) are checked the same way; integer codes must agree exactly, floats to a tolerance.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

torch.set_default_dtype(torch.float64)
N, D, T, B, C = 8, 3, 12, 4, 5  # hidden, input, steps, batch, classes


def orthogonal(n):
    q, r = torch.linalg.qr(torch.randn(n, n))
    return q * torch.sign(torch.diagonal(r))


def quantize(w, bits, per_row=False):
    """The paper's symmetric min-max quantizer (round half to even, as torch.round)."""
    s = 2 ** (bits - 1)
    a = w.abs().amax(dim=1, keepdim=True) if per_row else w.abs().max()
    a = torch.where(a == 0, torch.ones_like(a), a)
    return torch.clamp(torch.round(w * s / a), -s, s - 1) * a / s


def ste(w, bits):
    """Quantized forward, identity gradient."""
    return w + (quantize(w.detach(), bits) - w).detach()


def bjorck(a, iterations=15):
    w = a
    for _ in range(iterations):
        w = 1.5 * w - 0.5 * w @ w.T @ w
    return w


def modrelu(z, bm):
    return torch.sign(z) * torch.relu(z.abs() + bm)


def ornn(x, w, u, b, bm=None):
    h, hs = torch.zeros(x.shape[1], w.shape[0]), []
    for t in range(x.shape[0]):
        z = h @ w.T + x[t] @ u.T + b
        h = modrelu(z, bm) if bm is not None else torch.relu(z)
        hs.append(h)
    return torch.stack(hs)


def grads(named, loss):
    params = list(named.values())
    return {f"grad_{k}": g for k, g in zip(named, torch.autograd.grad(loss, params))}


def leaf(t):
    return t.clone().requires_grad_(True)


def write(out, name, tensors):
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))


def quant_minmax(out):
    w = torch.randn(N, N)
    tensors = {"w": w}
    for bits in [2, 3, 4, 5, 6, 8]:
        tensors[f"q{bits}"] = quantize(w, bits)
        tensors[f"q{bits}_per_row"] = quantize(w, bits, per_row=True)
    write(out, "quant_minmax", tensors)


def bjorck_file(out):
    a = torch.randn(N, N)
    a = leaf(a / torch.linalg.matrix_norm(a, ord=2))
    r = torch.randn(N, N)
    w = bjorck(a)
    (grad_a,) = torch.autograd.grad((w * r).sum(), a)
    write(out, "bjorck", {"a": a, "w": w, "r": r, "grad_a": grad_a})


def ornn_files(out):
    for act in ["relu", "modrelu"]:
        for readout in ["last", "many"]:
            p = {
                "W": leaf(orthogonal(N)),
                "U": leaf(torch.randn(N, D) * 0.5),
                "b": leaf(torch.randn(N) * 0.1),
                "V": leaf(torch.randn(C, N) * 0.5),
                "c": leaf(torch.randn(C) * 0.1),
            }
            if act == "modrelu":
                p["bm"] = leaf(torch.randn(N) * 0.1)
            x = torch.randn(T, B, D)
            h = ornn(x, p["W"], p["U"], p["b"], p.get("bm"))
            if readout == "last":
                logits = h[-1] @ p["V"].T + p["c"]
                y = torch.randint(0, C, (B,))
                loss = torch.nn.functional.cross_entropy(logits, y)
            else:
                logits = h @ p["V"].T + p["c"]
                y = torch.randint(0, C, (T, B))
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, C), y.reshape(-1))
            tensors = {**p, "x": x, "y": y, "h": h, "logits": logits, "loss": loss.reshape(1)}
            write(out, f"ornn_{act}_{readout}", {**tensors, **grads(p, loss)})


def qornn_files(out):
    for bits in [3, 4, 8]:
        a = orthogonal(N) + 0.05 * torch.randn(N, N)
        a = leaf(a / torch.linalg.matrix_norm(a, ord=2))
        p = {
            "A": a,
            "U": leaf(torch.randn(N, D) * 0.5),
            "b": leaf(torch.randn(N) * 0.1),
            "V": leaf(torch.randn(C, N) * 0.5),
            "c": leaf(torch.randn(C) * 0.1),
        }
        x, y = torch.randn(T, B, D), torch.randint(0, C, (B,))
        w_bjorck = bjorck(p["A"])
        w_q, u_q = ste(w_bjorck, bits), ste(p["U"], bits)
        logits = ornn(x, w_q, u_q, p["b"])[-1] @ p["V"].T + p["c"]
        loss = torch.nn.functional.cross_entropy(logits, y)
        tensors = {**p, "x": x, "y": y, "W_bjorck": w_bjorck, "W_q": w_q, "U_q": u_q}
        tensors.update({"logits": logits, "loss": loss.reshape(1)})
        write(out, f"qornn_bjorck_k{bits}", {**tensors, **grads(p, loss)})


def torch_cells(out):
    for name, module in [("lstm", torch.nn.LSTM(D, N)), ("gru", torch.nn.GRU(D, N))]:
        x, r = torch.randn(T, B, D), torch.randn(T, B, N)
        h, _ = module(x)
        named = dict(module.named_parameters())
        loss = (h * r).sum()
        write(out, name, {**named, "x": x, "r": r, "h": h, **grads(named, loss)})


def fast_cells(out):
    x, r = torch.randn(T, B, D), torch.randn(T, B, N)
    p = {
        "W": leaf(torch.randn(N, D) * 0.3),
        "U": leaf(torch.randn(N, N) * 0.3),
        "b_h": leaf(torch.randn(N) * 0.1),
        "alpha": leaf(torch.tensor([-3.0])),
        "beta": leaf(torch.tensor([3.0])),
    }
    h, hs = torch.zeros(B, N), []
    for t in range(T):
        pre = torch.tanh(x[t] @ p["W"].T + h @ p["U"].T + p["b_h"])
        h = torch.sigmoid(p["alpha"]) * pre + torch.sigmoid(p["beta"]) * h
        hs.append(h)
    h = torch.stack(hs)
    loss = (h * r).sum()
    write(out, "fastrnn", {**p, "x": x, "r": r, "h": h, **grads(p, loss)})

    x, r = torch.randn(T, B, D), torch.randn(T, B, N)
    p = {
        "W": leaf(torch.randn(N, D) * 0.3),
        "U": leaf(torch.randn(N, N) * 0.3),
        "b_z": leaf(torch.randn(N) * 0.1),
        "b_h": leaf(torch.randn(N) * 0.1),
        "zeta": leaf(torch.tensor([1.0])),
        "nu": leaf(torch.tensor([-4.0])),
    }
    h, hs = torch.zeros(B, N), []
    for t in range(T):
        pre = x[t] @ p["W"].T + h @ p["U"].T
        z, c = torch.sigmoid(pre + p["b_z"]), torch.tanh(pre + p["b_h"])
        h = z * h + (torch.sigmoid(p["zeta"]) * (1 - z) + torch.sigmoid(p["nu"])) * c
        hs.append(h)
    h = torch.stack(hs)
    loss = (h * r).sum()
    write(out, "fastgrnn", {**p, "x": x, "r": r, "h": h, **grads(p, loss)})


def projunn(out, rank=1):
    a = orthogonal(N)
    fa, fb = torch.randn(N, rank) * 0.2, torch.randn(N, rank) * 0.4
    u, _, vh = torch.linalg.svd(a + fa @ fb.T)
    m = a.T @ fa @ fb.T
    a_t = a @ torch.linalg.matrix_exp((m - m.T) / 2)
    write(out, "projunn", {"A": a, "a": fa, "b": fb, "A_D": u @ vh, "A_T": a_t})


def lsq(out, bits=4):
    q_n, q_p = 2 ** (bits - 1), 2 ** (bits - 1) - 1
    v, r = leaf(torch.randn(N, N) * 0.3), torch.randn(N, N)
    s = leaf(torch.tensor([0.05]))
    g = 1.0 / (v.numel() * q_p) ** 0.5
    s_scaled = (s - s * g).detach() + s * g  # the value of s, the gradient of g s
    x = torch.clamp(v / s_scaled, -q_n, q_p)
    v_hat = (x + (torch.round(x) - x).detach()) * s_scaled
    grad_v, grad_s = torch.autograd.grad((v_hat * r).sum(), [v, s])
    write(out, "lsq_k4", {"v": v, "s": s, "r": r, "v_hat": v_hat, "grad_v": grad_v, "grad_s": grad_s})


def permutation(out):
    perm = np.random.RandomState(92916).permutation(784)
    write(out, "pmnist_permutation", {"permutation": torch.from_numpy(perm).to(torch.int64)})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    for make in [quant_minmax, bjorck_file, ornn_files, qornn_files, torch_cells, fast_cells, projunn, lsq, permutation]:
        make(args.out)
    print(f"wrote {len(list(args.out.glob('*.safetensors')))} files to {args.out}")


if __name__ == "__main__":
    main()

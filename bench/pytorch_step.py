#!/usr/bin/env python3
"""One full STE-Björck QORNN training step in PyTorch on CPU, the same step `qornn bench`
times: spectral normalisation (one power iteration), 15 Björck iterations, the paper's
per-tensor quantizer with a straight-through estimator on W and U, a ReLU recurrence over
T steps, a last-step read-out with cross-entropy, backward through all of it, RMSprop.

Prints one JSON object: {"seconds_per_step", "phases": {...}, "peak_rss_bytes"}.
"""
import argparse
import json
import resource
import statistics
import time

import torch


def quantize_ste(w, bits):
    if bits >= 32:
        return w
    a = w.detach().abs().max().clamp_min(1e-12)
    s = 2 ** (bits - 1)
    q = torch.clamp(torch.round(w.detach() * s / a), -s, s - 1) * a / s
    return w + (q - w).detach()


def bjorck(w, iterations=15, beta=0.5):
    for _ in range(iterations):
        w = (1 + beta) * w - beta * w @ w.t() @ w
    return w


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=170)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seq", type=int, default=784)
    p.add_argument("--input", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--keep-denormals", action="store_true",
                   help="leave subnormal floats on (PyTorch's default); by default they are "
                        "flushed, which is PyTorch's fastest setting on CPU")
    args = p.parse_args()
    torch.set_flush_denormal(not args.keep_denormals)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, d, c = args.hidden, args.input, args.classes
    A = torch.nn.Parameter(torch.linalg.qr(torch.randn(n, n))[0])
    U = torch.nn.Parameter(torch.empty(n, d).uniform_(-d ** -0.5, d ** -0.5))
    b = torch.nn.Parameter(torch.zeros(n))
    V = torch.nn.Parameter(torch.empty(c, n).uniform_(-n ** -0.5, n ** -0.5))
    cb = torch.nn.Parameter(torch.zeros(c))
    opt = torch.optim.RMSprop([A, U, b, V, cb], lr=1e-3)
    u = torch.nn.functional.normalize(torch.randn(n), dim=0)
    x = torch.rand(args.seq, args.batch, d)
    y = torch.randint(0, c, (args.batch,))

    def step():
        nonlocal u
        t0 = time.perf_counter()
        with torch.no_grad():
            v = torch.nn.functional.normalize(A.t() @ u, dim=0)
            u = torch.nn.functional.normalize(A @ v, dim=0)
        sigma = u @ A @ v
        W = quantize_ste(bjorck(A / sigma), args.bits)
        Uq = quantize_ste(U, args.bits)
        t1 = time.perf_counter()
        xu = (x.reshape(-1, d) @ Uq.t() + b).reshape(args.seq, args.batch, n)
        h = torch.zeros(args.batch, n)
        # unbind, not xu[t]: indexing's backward would build a full-size gradient per step
        for xu_t in xu.unbind(0):
            h = torch.relu(h @ W.t() + xu_t)
        loss = torch.nn.functional.cross_entropy(h @ V.t() + cb, y)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        return t4 - t0, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)

    step()
    totals, phases = [], []
    for _ in range(args.repeats):
        total, ph = step()
        totals.append(total)
        phases.append(ph)
    med = lambda i: statistics.median(p[i] for p in phases)
    print(json.dumps({
        "framework": "pytorch " + torch.__version__,
        "flush_denormal": not args.keep_denormals,
        "threads": torch.get_num_threads(),
        "hidden": n, "batch": args.batch, "seq": args.seq, "bits": args.bits,
        "seconds_per_step": statistics.median(totals),
        "phases": {"parametrise": med(0), "forward": med(1), "backward": med(2), "optimiser": med(3)},
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()

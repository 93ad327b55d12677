#!/usr/bin/env python3
"""One full training step in PyTorch on CPU, the same step `qornn bench` times.

--model qornn-bjorck: spectral normalisation (one power iteration), 15 Björck iterations,
the paper's per-tensor quantizer with a straight-through estimator on W and U, a ReLU
recurrence over T steps. --model lstm / gru: torch.nn.LSTM / torch.nn.GRU (their fused
kernels; with --bits 32, as qornn's baselines are timed). --model fastgrnn: EdgeML's
FastGRNN cell, scripted step by step. --model block-hadamrnn (hadamrnn: one block, m = n): W = diag(sign(v)) (I ⊗ H_m) /
sqrt(m) built dense (the sign with a straight-through gradient), U at --bits with the
quantizer above, the recurrence with --act (relu or modrelu), the sequence unbound once.
--model qornn-rotations: 2 x 2 rotation blocks from learned angles, cos and sin at --bits
with the quantizer above, applied pair by pair (--rotations dense: W built dense, one
(n, n) product per step), U and the recurrence as for the Hadamard models.
Then a last-step read-out with cross-entropy,
backward through all of it, RMSprop.

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


def activation(name, bm):
    """ReLU, or modReLU with its biases bm."""
    if name == "relu":
        return torch.relu
    return lambda z: torch.sign(z) * torch.relu(z.abs() + bm)


def unbound_recurrence(x, u, b, w_times, act):
    """h_t = act(W h_{t-1} + U x_t + b) over the sequence (w_times(h) = W h), the input's
    share for every step at once; the last state. The sequence is unbound once: indexing's
    backward would build a full-size gradient per step."""
    seq, batch, d = x.shape
    n = u.shape[0]
    xu = (x.reshape(-1, d) @ u.t() + b).reshape(seq, batch, n)
    h = torch.zeros(batch, n)
    for xu_t in xu.unbind(0):
        h = act(w_times(h) + xu_t)
    return h


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="qornn-bjorck", choices=["qornn-bjorck", "block-hadamrnn", "hadamrnn", "qornn-rotations", "lstm", "gru", "fastgrnn"])
    p.add_argument("--rotations", default="pairs", choices=["pairs", "dense"], help="qornn-rotations: pair by pair (the faster here) or W dense")
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--act", default="relu", choices=["relu", "modrelu"])
    p.add_argument("--hidden", type=int, default=170)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seq", type=int, default=784)
    p.add_argument("--input", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--inference", action="store_true",
                   help="time float inference (forward only, no gradients) and print sequences per second")
    p.add_argument("--keep-denormals", action="store_true",
                   help="leave subnormal floats on (PyTorch's default); by default they are "
                        "flushed, which is PyTorch's fastest setting on CPU")
    args = p.parse_args()
    torch.set_flush_denormal(not args.keep_denormals)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, d, c = args.hidden, args.input, args.classes
    V = torch.nn.Parameter(torch.empty(c, n).uniform_(-n ** -0.5, n ** -0.5))
    cb = torch.nn.Parameter(torch.zeros(c))
    x = torch.rand(args.seq, args.batch, d)
    y = torch.randint(0, c, (args.batch,))

    if args.model == "qornn-bjorck":
        A = torch.nn.Parameter(torch.linalg.qr(torch.randn(n, n))[0])
        U = torch.nn.Parameter(torch.empty(n, d).uniform_(-d ** -0.5, d ** -0.5))
        b = torch.nn.Parameter(torch.zeros(n))
        core_params = [A, U, b]
        state = {"u": torch.nn.functional.normalize(torch.randn(n), dim=0)}

        def parametrise():
            with torch.no_grad():
                v = torch.nn.functional.normalize(A.t() @ state["u"], dim=0)
                state["u"] = torch.nn.functional.normalize(A @ v, dim=0)
            sigma = state["u"] @ A @ v
            return quantize_ste(bjorck(A / sigma), args.bits), quantize_ste(U, args.bits)

        def recur(weights):
            W, Uq = weights
            return unbound_recurrence(x, Uq, b, lambda h: h @ W.t(), torch.relu)
    elif args.model in ("block-hadamrnn", "hadamrnn"):
        m = args.block if args.model == "block-hadamrnn" else n
        H = torch.ones(1, 1)
        while H.shape[0] < m:
            H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
        blocks = torch.block_diag(*([H / m ** 0.5] * (n // m)))
        v = torch.nn.Parameter(torch.randn(n))
        U = torch.nn.Parameter(torch.empty(n, d).uniform_(-d ** -0.5, d ** -0.5))
        b = torch.nn.Parameter(torch.zeros(n))
        bm = torch.nn.Parameter(torch.zeros(n))
        core_params = [v, U, b, bm]

        def parametrise():
            sign = v + (torch.where(v.detach() < 0, -1.0, 1.0) - v).detach()
            return sign[:, None] * blocks, quantize_ste(U, args.bits)

        def recur(weights):
            W, Uq = weights
            return unbound_recurrence(x, Uq, b, lambda h: h @ W.t(), activation(args.act, bm))
    elif args.model == "qornn-rotations":
        theta = torch.nn.Parameter(torch.empty(n // 2).uniform_(-3.14, 3.14))
        U = torch.nn.Parameter(torch.empty(n, d).uniform_(-d ** -0.5, d ** -0.5))
        b = torch.nn.Parameter(torch.zeros(n))
        bm = torch.nn.Parameter(torch.zeros(n))
        core_params = [theta, U, b, bm]

        def parametrise():
            cs = quantize_ste(torch.stack([theta.cos(), theta.sin()], 1), args.bits)
            if args.rotations == "pairs":
                return cs, quantize_ste(U, args.bits)
            c, s_ = cs[:, 0], cs[:, 1]
            blocks = torch.stack([torch.stack([c, -s_], 1), torch.stack([s_, c], 1)], 1)
            return torch.block_diag(*blocks.unbind(0)), quantize_ste(U, args.bits)

        def rotate(h, cs):
            p = h.view(h.shape[0], n // 2, 2)
            c, s_ = cs[:, 0], cs[:, 1]
            r = torch.stack([c * p[..., 0] - s_ * p[..., 1], s_ * p[..., 0] + c * p[..., 1]], 2)
            return r.reshape(h.shape[0], n)

        def recur(weights):
            W, Uq = weights
            w_times = (lambda h: rotate(h, W)) if args.rotations == "pairs" else (lambda h: h @ W.t())
            return unbound_recurrence(x, Uq, b, w_times, activation(args.act, bm))
    elif args.model in ("lstm", "gru"):
        rnn = (torch.nn.LSTM if args.model == "lstm" else torch.nn.GRU)(d, n)
        core_params = list(rnn.parameters())

        def parametrise():
            return None

        def recur(_):
            return rnn(x)[0][-1]
    else:
        W = torch.nn.Parameter(0.1 * torch.randn(n, d))
        U = torch.nn.Parameter(0.1 * torch.randn(n, n))
        b_z = torch.nn.Parameter(torch.ones(n))
        b_h = torch.nn.Parameter(torch.ones(n))
        zeta = torch.nn.Parameter(torch.tensor(1.0))
        nu = torch.nn.Parameter(torch.tensor(-4.0))
        core_params = [W, U, b_z, b_h, zeta, nu]

        def parametrise():
            return None

        def recur(_):
            xw = (x.reshape(-1, d) @ W.t()).reshape(args.seq, args.batch, n)
            h = torch.zeros(args.batch, n)
            for xw_t in xw.unbind(0):
                pre = xw_t + h @ U.t()
                z = torch.sigmoid(pre + b_z)
                cand = torch.tanh(pre + b_h)
                h = z * h + (torch.sigmoid(zeta) * (1 - z) + torch.sigmoid(nu)) * cand
            return h

    opt = torch.optim.RMSprop(core_params + [V, cb], lr=1e-3)

    def step():
        t0 = time.perf_counter()
        weights = parametrise()
        t1 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(recur(weights) @ V.t() + cb, y)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        return t4 - t0, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)

    if args.inference:
        with torch.no_grad():
            weights = parametrise()
            recur(weights)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                (recur(weights) @ V.t() + cb).argmax(1)
                times.append(time.perf_counter() - t0)
        print(json.dumps({"framework": "pytorch " + torch.__version__, "model": args.model, "threads": torch.get_num_threads(),
                          "hidden": n, "batch": args.batch, "seq": args.seq,
                          "sequences_per_second": args.batch / statistics.median(times)}))
        return

    step()
    totals, phases = [], []
    for _ in range(args.repeats):
        total, ph = step()
        totals.append(total)
        phases.append(ph)
    med = lambda i: statistics.median(p[i] for p in phases)
    print(json.dumps({
        "framework": "pytorch " + torch.__version__,
        "model": args.model,
        "flush_denormal": not args.keep_denormals,
        "threads": torch.get_num_threads(),
        "hidden": n, "batch": args.batch, "seq": args.seq, "bits": args.bits,
        "seconds_per_step": statistics.median(totals),
        "phases": {"parametrise": med(0), "forward": med(1), "backward": med(2), "optimiser": med(3)},
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()

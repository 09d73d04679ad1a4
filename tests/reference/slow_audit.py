"""Slow, obvious loops that the audit kernels and attacks are tested against (one record at a time).

Used by ``tests/unit/audit/test_kernels.py`` (the kernels of ``fairpriv_lab.audit.kernels``)
and ``tests/unit/audit/test_audit.py`` (the public attacks).
"""

import numpy as np


def ref_best_acc(s, lab):
    """In-sample: best accuracy of 'member iff s >= t' over every observed threshold."""
    best = 0.0
    for t in list(np.unique(s)) + [np.inf]:
        best = max(best, np.mean((s >= t) == lab))
    return best


def ref_fit_tau(s, lab):
    """Lowest accuracy-maximising midpoint threshold (plain loop over thresholds)."""
    u = np.unique(s).astype(np.float64)
    cands = [-np.inf] + [u[i] / 2 + u[i + 1] / 2 for i in range(len(u) - 1)] + [np.inf]
    best, tau = -1.0, None
    for t in cands:
        acc = np.mean((s >= t) == lab)
        if acc > best:
            best, tau = acc, t
    return tau


def ref_cross_fit(s_in, s_out, fold):
    K = s_in.size
    parts = []
    for f in (fold, ~fold):
        parts.append((np.concatenate([s_in[f], s_out[f]]), np.r_[np.ones(f.sum(), bool), np.zeros(f.sum(), bool)]))
    (sa, la), (sb, lb) = parts
    correct = np.sum((sb >= ref_fit_tau(sa, la)) == lb) + np.sum((sa >= ref_fit_tau(sb, lb)) == la)
    return correct / (2 * K)


def ref_record_in_sample(losses, mem, records):
    """Per record: gather its in/out scores by looping over the pairs (independent of audit.py)."""
    out = []
    for r in records:
        s, lab = [], []
        for p in range(mem.shape[0] // 2):
            a, b = mem[2 * p, r], mem[2 * p + 1, r]
            if a != b:
                s += [-losses[2 * p, r], -losses[2 * p + 1, r]]
                lab += [a, b]
        out.append(ref_best_acc(np.array(s), np.array(lab)))
    return np.array(out)


def ref_global(scores, labels, trial, cell, partner):
    n_models, m = scores.shape
    tau = {}
    for k in range(n_models):
        for c in np.unique(cell):
            sel = (cell == c) & trial[k]
            tau[k, c] = ref_fit_tau(scores[k, sel], labels[k, sel]) if sel.any() else -np.inf
    acc = np.zeros(m)
    for r in range(m):
        ks = np.flatnonzero(trial[:, r])
        acc[r] = np.mean([(scores[k, r] >= tau.get((k, partner[r]), -np.inf)) == labels[k, r] for k in ks])
    return acc

"""Teaching pictures: DP's ceiling on risk against epsilon, the membership game, one DP-SGD step.

Every picture is a chart built from numbers the package computes (no external images), so a
test can read it through ``chart.to_dict()``. Taught in notebook 4.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._core.dp import advantage_bound
from .._core.rng import as_generator
from .._core.validate import choice, fail, float_array, integer, number, positive
from ._adapters import by_group_frame
from ._core import WIDTH, altair, domain, group_color, layered, title_params, titled

Neighbours = Literal["add_remove", "substitute"]

#: Colour of DP's ceiling, the same in every chart.
BOUND_COLOR = "#7f7f7f"


def dp_bound_frame(
    epsilons: Iterable[float], *, delta: float = 1e-5, neighbours: Neighbours = "substitute"
) -> pd.DataFrame:
    """DP's ceiling on any record's (hence any group's) privacy risk, in percentage points.

    ``bound_pp = 100 * advantage_bound(eps, delta, neighbours=...)``, see
    :func:`fairpriv_lab.audit.advantage_bound`.

    Parameters
    ----------
    epsilons : iterable of float
        Budgets in (0, inf).
    delta : float
        The accounted delta.
    neighbours : {"substitute", "add_remove"}
        ``"substitute"`` for the ALOOA and half-split games, ``"add_remove"`` for exact LOO.

    Returns
    -------
    pandas.DataFrame
        Columns ``epsilon, bound_pp``.
    """
    eps = [float(e) for e in epsilons]
    return pd.DataFrame({"epsilon": eps,
                         "bound_pp": [100 * advantage_bound(e, delta, neighbours=neighbours) for e in eps]})


def bound_layers(
    alt: Any, eps_range: tuple[float, float], *, delta: float, neighbours: Neighbours, y_title: str
) -> tuple[list[Any], str]:
    """Grey curve of DP's ceiling over eps_range (log-spaced) and a subtitle line quoting it."""
    lo, hi = eps_range
    grid = np.geomspace(lo, hi, 40) if hi > lo else np.array([lo])
    frame = dp_bound_frame(grid, delta=delta, neighbours=neighbours).assign(what="DP ceiling")
    game = "2ε, substitution game" if neighbours == "substitute" else "add/remove game"
    curve = alt.Chart(frame).mark_line(color=BOUND_COLOR, strokeDash=[2, 2], strokeWidth=2).encode(
        x=alt.X("epsilon:Q"),
        y=alt.Y("bound_pp:Q", title=y_title),
        tooltip=[alt.Tooltip("epsilon:Q", title="ε", format=".3g"),
                 alt.Tooltip("bound_pp:Q", title="DP ceiling (pp)", format=".2f")],
    )
    first = frame.iloc[0]
    label = alt.Chart(frame.iloc[[0]]).mark_text(align="left", dx=4, dy=-6, color=BOUND_COLOR).encode(
        x=alt.X("epsilon:Q"), y=alt.Y("bound_pp:Q"), text=alt.value("DP ceiling"))
    sub = (f"grey dotted: DP's ceiling 100·(e^ε'−1+2δ')/(e^ε'+1) ({game}, δ = {delta:g}); "
           f"{first['bound_pp']:.1f} pp at ε = {first['epsilon']:.3g}")
    return [curve, label], sub


def gpr_vs_epsilon(
    entries: Iterable[Any],
    *,
    delta: float = 1e-5,
    neighbours: Neighbours = "substitute",
    group_order: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """Each group's GPR (with CI) against epsilon, under DP's ceiling on any group's risk.

    The y axis is symmetric-log, so that the ceiling (tens of pp) and the measured risks (a few
    pp, possibly below 0 by noise) fit one chart. Runs with epsilon = inf (SGD) are dashed
    horizontal rules per group. Taught in notebook 4.

    Parameters
    ----------
    entries : iterable of mapping or object
        Each with ``epsilon`` (float, ``math.inf`` for SGD) and ``risk`` (GroupRisk-like or a
        by-group DataFrame in percentage points); ``method`` optional.
    delta : float
        The accounted delta of the DP runs (``result.delta``).
    neighbours : {"substitute", "add_remove"}
        The game's neighbouring relation (ALOOA and half-split: substitute).
    group_order : sequence of str, optional
        Fixed group order (colours).
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
    """
    alt = altair()
    number("delta", delta, 0.0, 1.0, high_open=True)
    choice("neighbours", neighbours, ("add_remove", "substitute"))
    rows = []
    for i, entry in enumerate(entries):
        get = entry.get if isinstance(entry, Mapping) else (lambda k, d=None, e=entry: getattr(e, k, d))
        eps, risk = get("epsilon"), get("risk")
        if eps is None or risk is None:
            raise fail(f"entries[{i}]", entry, "to provide epsilon and risk")
        frame = by_group_frame(risk, name=f"entries[{i}].risk")
        frame["epsilon"] = float(eps)
        frame["method"] = str(get("method", "SGD" if math.isinf(float(eps)) else "DP-SGD"))
        rows.append(frame)
    if not rows:
        raise fail("entries", "an empty iterable", "to hold at least one run")
    data = pd.concat(rows, ignore_index=True)
    finite = data[np.isfinite(data["epsilon"])]
    if finite.empty:
        raise fail("entries", "only runs with epsilon=inf", "to hold at least one finite epsilon")
    infinite = data[np.isinf(data["epsilon"])]
    dom = domain(data["group"], group_order)
    color = group_color(alt, dom)
    y_title = "GPR (percentage points)"
    yscale = alt.Scale(type="symlog", constant=1)
    lo, hi = float(finite["epsilon"].min()), float(finite["epsilon"].max())
    bound, bound_sub = bound_layers(alt, (lo, hi), delta=delta, neighbours=neighbours, y_title=y_title)
    tip = [alt.Tooltip("group:N", title="Group"), alt.Tooltip("epsilon:Q", title="ε", format=".3g"),
           alt.Tooltip("gpr:Q", title="GPR (pp)", format=".2f"),
           alt.Tooltip("ci_low:Q", title="CI low", format=".2f"),
           alt.Tooltip("ci_high:Q", title="CI high", format=".2f")]
    x = alt.X("epsilon:Q", title="Privacy budget ε (log scale)", scale=alt.Scale(type="log"))
    base = alt.Chart(finite).encode(x=x, color=color, tooltip=tip)
    layers = [
        base.mark_line(point=alt.OverlayMarkDef(filled=True, size=60)).encode(
            y=alt.Y("gpr:Q", title=y_title, scale=yscale)),
        base.mark_errorbar(ticks=True).encode(y=alt.Y("ci_low:Q", title=y_title, scale=yscale), y2=alt.Y2("ci_high:Q")),
        *bound,
    ]
    if len(infinite):
        inf = infinite.assign(label=infinite["group"] + ": " + infinite["method"] + " (ε = ∞)")
        layers.append(alt.Chart(inf).mark_rule(strokeDash=[6, 4], size=2).encode(
            y=alt.Y("gpr:Q", scale=yscale), color=color, tooltip=tip))
    text = title or "Group privacy risk against ε, under DP's ceiling"
    sub = [bound_sub, "points: GPR with 95% CI; dashed: SGD (ε = ∞, no ceiling); y: symmetric log scale"]
    return titled(list(layers), alt, text, sub)


# ---------------------------------------------------------------- the membership game
def membership_game_diagram(
    game: Any,
    losses: np.ndarray | None = None,
    *,
    record: int | None = None,
    n_records: int | None = None,
    n_models: int | None = None,
) -> Any:
    """Picture of the membership game: who trains on what, and the attacker's guess for one record.

    Left: the membership matrix of the first ``n_models`` models on the first ``n_records``
    audited records (filled = the record is in that model's training set; models come in
    complementary pairs). Right (when ``losses`` is given): the chosen record's loss in every
    model, members and non-members, with the best threshold "member iff loss < t" and the
    accuracy it reaches (in-sample, for the picture; the audit uses cross-fitting).

    Parameters
    ----------
    game : Game
        ``result.game`` (``membership`` (n_models, n_samples) bool, ``audit_idx``).
    losses : ndarray, optional
        ``(n_models, n_samples)`` per-model per-record losses (``result.losses``).
    record : int, optional
        Dataset index of the record on the right (default: the first audited record).
    n_records, n_models : int, optional
        Size of the matrix shown (default: at most 12 records and 8 models).

    Returns
    -------
    altair chart
    """
    alt = altair()
    membership = np.asarray(game.membership)
    audit_idx = np.asarray(game.audit_idx)
    n_models = integer("n_models", min(8, membership.shape[0]) if n_models is None else n_models,
                       2, membership.shape[0])
    n_records = integer("n_records", min(12, len(audit_idx)) if n_records is None else n_records,
                        1, len(audit_idx))
    shown = audit_idx[:n_records]
    cells = pd.DataFrame([
        {"model": f"model {k}", "model_i": k, "record": f"#{int(r)}", "record_i": j,
         "in": "member (trained on it)" if membership[k, r] else "non-member"}
        for k in range(n_models) for j, r in enumerate(shown)
    ])
    matrix = alt.Chart(cells).mark_rect(stroke="white", strokeWidth=1).encode(
        x=alt.X("record:N", sort=[f"#{int(r)}" for r in shown], title="audited record"),
        y=alt.Y("model:N", sort=[f"model {k}" for k in range(n_models)], title=None),
        color=alt.Color("in:N", title=None, scale=alt.Scale(domain=["member (trained on it)", "non-member"],
                                                            range=["#0072B2", "#DDDDDD"])),
        tooltip=["model:N", "record:N", "in:N"],
    ).properties(width=min(WIDTH, 24 * n_records), height=22 * n_models,
                 title=title_params(alt, "1. The challenger flips a coin per model",
                                    "each record is in half of the models; pairs (2p, 2p+1) are complements"))
    if losses is None:
        return matrix.properties(description="The membership game: membership matrix")
    losses = float_array("losses", losses, 2, finite=False)
    if losses.shape != membership.shape:
        raise fail("losses", f"an array of shape {losses.shape}", f"to have shape {membership.shape}")
    target = int(shown[0] if record is None else record)
    if target not in set(audit_idx.tolist()):
        raise fail("record", target, "to be an audited record (game.audit_idx)")
    loss, member = losses[:, target], membership[:, target]
    cands = np.unique(loss)
    cands = np.concatenate([cands, [np.inf]])
    accs = [np.mean((loss < t) == member) for t in cands]
    best = int(np.argmax(accs))
    t, acc = float(cands[best]), float(accs[best])
    t_show = t if np.isfinite(t) else float(loss.max())
    pts = pd.DataFrame({"loss": loss, "model": [f"model {k}" for k in range(len(loss))],
                        "truth": np.where(member, "member", "non-member"),
                        "guess": np.where(loss < t, "guessed member", "guessed non-member")})
    dots = alt.Chart(pts).mark_circle(size=90, opacity=0.8).encode(
        x=alt.X("loss:Q", title=f"loss of record #{target} in each model"),
        y=alt.Y("truth:N", title=None),
        color=alt.Color("truth:N", scale=alt.Scale(domain=["member", "non-member"], range=["#0072B2", "#999999"]),
                        legend=None),
        tooltip=["model:N", "truth:N", "guess:N", alt.Tooltip("loss:Q", format=".4f")],
    )
    rule = alt.Chart(pd.DataFrame({"t": [t_show]})).mark_rule(color="#D55E00", strokeWidth=2).encode(x=alt.X("t:Q"))
    attack = layered(
        alt, [dots, rule], width=WIDTH, height=110,
        title=title_params(alt, "2. The attacker sees the losses and guesses 'member iff loss < t'",
                           f"best t (orange) is right in {100 * acc:.0f} % of models: "
                           f"IPR = 2·accuracy − 1 = {100 * (2 * acc - 1):.0f} pp (in-sample; the audit cross-fits)"))
    return alt.vconcat(matrix, attack).properties(
        description=f"The membership game for record {target}: accuracy {acc:.2f}")


# ---------------------------------------------------------------- one DP-SGD step
def dp_sgd_step_frame(
    grads: np.ndarray, *, clip: float = 1.0, noise_multiplier: float = 1.0, seed: Any = 0
) -> dict[str, Any]:
    """Compute one DP-SGD step on 2-D per-example gradients: clip, sum, add noise.

    ``f_i = min(1, C / (||g_i|| + 1e-6))`` (Opacus's and ``privacy.DPStep``'s clip factor),
    ``s = sum_i f_i g_i``, ``noisy = s + sigma C xi`` with ``xi ~ N(0, I)``, update
    ``noisy / B``.

    Parameters
    ----------
    grads : ndarray
        ``(B, 2)`` per-example gradients.
    clip : float
        The clipping bound C.
    noise_multiplier : float
        sigma (>= 0).
    seed : int or Generator, optional
        Noise seed.

    Returns
    -------
    dict
        ``vectors`` (DataFrame: stage, example, x, y, norm), ``factors`` (B,), ``sum`` (2,),
        ``noise`` (2,), ``noisy_sum`` (2,), ``update`` (2,).
    """
    g = float_array("grads", grads, 2)
    if g.shape[1] != 2 or g.shape[0] < 1:
        raise fail("grads", f"an array of shape {g.shape}", "to have shape (B, 2) with B >= 1")
    clip = positive("clip", clip)
    sigma = number("noise_multiplier", noise_multiplier, 0.0, math.inf)
    norms = np.linalg.norm(g, axis=1)
    factors = np.minimum(1.0, clip / (norms + 1e-6))
    clipped = g * factors[:, None]
    total = clipped.sum(axis=0)
    noise = sigma * clip * as_generator(seed).standard_normal(2)
    noisy = total + noise
    rows = [{"stage": stage, "example": i, "x": float(v[0]), "y": float(v[1]), "norm": float(np.hypot(*v))}
            for stage, vecs in (("1. per-example gradients", g), ("2. clipped to norm ≤ C", clipped))
            for i, v in enumerate(vecs)]
    return {"vectors": pd.DataFrame(rows), "factors": factors, "sum": total, "noise": noise,
            "noisy_sum": noisy, "update": noisy / len(g)}


def dp_sgd_step_diagram(
    grads: np.ndarray | None = None, *, clip: float = 1.0, noise_multiplier: float = 1.0, seed: Any = 0
) -> Any:
    """Picture of one DP-SGD step in two dimensions: clip → sum → noise.

    Three panels on the same axes: the per-example gradients with the circle of radius C;
    the clipped gradients (each now inside the circle); their sum, the Gaussian noise of
    standard deviation sigma·C per coordinate, and the noisy sum that is released.

    Parameters
    ----------
    grads : ndarray, optional
        ``(B, 2)`` per-example gradients; default: six examples, one of them an outlier
        (a record the model fits badly) whose gradient is much longer than the others.
    clip, noise_multiplier, seed
        As in :func:`dp_sgd_step_frame`.

    Returns
    -------
    altair.HConcatChart
    """
    alt = altair()
    if grads is None:
        grads = np.array([[0.6, 0.3], [0.5, -0.2], [0.8, 0.4], [0.4, 0.1], [0.7, -0.4], [-2.6, 2.2]])
    step = dp_sgd_step_frame(grads, clip=clip, noise_multiplier=noise_multiplier, seed=seed)
    vec = step["vectors"]
    s, noisy = step["sum"], step["noisy_sum"]
    third = pd.DataFrame([
        {"what": "sum of clipped", "x0": 0.0, "y0": 0.0, "x": s[0], "y": s[1]},
        {"what": "noise σ·C·ξ", "x0": s[0], "y0": s[1], "x": noisy[0], "y": noisy[1]},
        {"what": "released: noisy sum", "x0": 0.0, "y0": 0.0, "x": noisy[0], "y": noisy[1]},
    ])
    ext = float(max(np.abs(vec[["x", "y"]].to_numpy()).max(), np.abs(third[["x", "y"]].to_numpy()).max(), clip)) * 1.15
    scale = alt.Scale(domain=[-ext, ext], nice=False)
    theta = np.linspace(0, 2 * np.pi, 73)
    circle = pd.DataFrame({"x": clip * np.cos(theta), "y": clip * np.sin(theta), "order": np.arange(73)})
    ring = alt.Chart(circle).mark_line(color="#D55E00", strokeDash=[4, 3]).encode(
        x=alt.X("x:Q", scale=scale, title=None), y=alt.Y("y:Q", scale=scale, title=None), order=alt.Order("order:Q"))
    side = 190

    def arrows(frame: pd.DataFrame, title: str, sub: str, color: Any) -> Any:
        frame = frame.assign(x0=frame.get("x0", 0.0), y0=frame.get("y0", 0.0))
        body = alt.Chart(frame).mark_rule(strokeWidth=2).encode(
            x=alt.X("x0:Q", scale=scale, title=None), y=alt.Y("y0:Q", scale=scale, title=None),
            x2=alt.X2("x:Q"), y2=alt.Y2("y:Q"), color=color)
        heads = alt.Chart(frame).mark_point(filled=True, size=40).encode(x=alt.X("x:Q"), y=alt.Y("y:Q"), color=color)
        return layered(alt, [ring, body, heads], width=side, height=side,
                       title=title_params(alt, title, sub))

    ex_color = alt.Color("example:N", legend=None, scale=alt.Scale(scheme="tableau10"))
    n_clipped = int((step["factors"] < 1).sum())
    p1 = arrows(vec[vec["stage"].str.startswith("1")], "1. Per-example gradients",
                f"dashed circle: radius C = {clip:g}", ex_color)
    p2 = arrows(vec[vec["stage"].str.startswith("2")], "2. Clip each to norm ≤ C",
                f"{n_clipped} of {len(step['factors'])} shortened; the outlier loses most", ex_color)
    p3 = arrows(third, "3. Sum, then add noise", f"noise N(0, (σC)²) per coordinate, σ = {noise_multiplier:g}",
                alt.Color("what:N", title=None, scale=alt.Scale(
                    domain=["sum of clipped", "noise σ·C·ξ", "released: noisy sum"],
                    range=["#555555", "#CC79A7", "#0072B2"])))
    # independent colours: examples in panels 1-2, the three vectors in panel 3
    return alt.hconcat(p1, p2, p3).resolve_scale(color="independent").properties(
        description=(f"One DP-SGD step: {len(step['factors'])} gradients clipped to C = {clip:g}, summed, "
                     f"Gaussian noise σ = {noise_multiplier:g} added"))

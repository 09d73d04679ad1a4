"""The teaching pictures of viz: DP's ceiling on risk-vs-ε charts, the membership game, a DP-SGD step.

Each chart is inspected through ``chart.to_dict()`` against numbers computed here the slow way,
and drawn once by vl-convert (Vega-Lite 6) and as the Vega 5 compile the notebooks' front ends
draw offline.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

alt = pytest.importorskip("altair")
vl_convert = pytest.importorskip("vl_convert")

from fairpriv_lab import ConfigError, viz  # noqa: E402
from fairpriv_lab.audit import advantage_bound  # noqa: E402
from fairpriv_lab.games import aloo_game  # noqa: E402


def _datasets(spec: dict) -> list[list[dict]]:
    out = [v for v in spec.get("datasets", {}).values()]
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("data"), dict) and "values" in node["data"]:
                out.append(node["data"]["values"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def _rows_with(spec: dict, *cols: str) -> pd.DataFrame:
    rows = [r for values in _datasets(spec) for r in values if all(c in r for c in cols)]
    return pd.DataFrame(rows)


def _draws(chart) -> None:
    svg = viz.to_svg(chart)
    assert svg.lstrip().startswith("<svg") and "<path" in svg
    vega = viz.to_vega(chart)
    mine = vl_convert.vega_to_svg(vega)
    assert sorted(re.findall(r"<text[^>]*>([^<]*)</text>", mine)) == sorted(re.findall(r"<text[^>]*>([^<]*)</text>", svg))


def _risk(gprs, ci=0.5):
    return pd.DataFrame({"group": ["Female", "Male"], "n": [300, 700], "gpr": gprs,
                         "ci_low": [g - ci for g in gprs], "ci_high": [g + ci for g in gprs], "floor": [0.0, 0.0]})


ENTRIES = [{"method": "SGD", "epsilon": math.inf, "risk": _risk([4.0, 3.0])},
           {"method": "DP-SGD", "epsilon": 0.5, "risk": _risk([0.2, -0.1])},
           {"method": "DP-SGD", "epsilon": 8.0, "risk": _risk([0.9, 0.4])}]


def test_gpr_vs_epsilon_draws_the_dp_ceiling_from_advantage_bound():
    chart = viz.gpr_vs_epsilon(ENTRIES, delta=1e-5, group_order=["Female", "Male"])
    spec = chart.to_dict()
    bound = _rows_with(spec, "epsilon", "bound_pp")
    assert bound["epsilon"].min() == pytest.approx(0.5) and bound["epsilon"].max() == pytest.approx(8.0)
    for rec in bound.itertuples():
        assert rec.bound_pp == pytest.approx(100 * advantage_bound(rec.epsilon, 1e-5, neighbours="substitute"))
    # the ceiling at ε = 0.5 in the substitution game: (e - 1)/(e + 1) ≈ 46.2 pp
    assert bound["bound_pp"].min() == pytest.approx(100 * (math.e - 1) / (math.e + 1), abs=0.01)
    points = _rows_with(spec, "epsilon", "gpr", "group")
    assert len(points[np.isfinite(points["epsilon"])]) == 4
    assert '"symlog"' in chart.to_json()
    assert "46.2 pp at ε = 0.5" in str(spec["title"])
    _draws(chart)


def test_gpr_vs_epsilon_add_remove_ceiling_is_lower():
    sub = _rows_with(viz.gpr_vs_epsilon(ENTRIES).to_dict(), "bound_pp")["bound_pp"]
    add = _rows_with(viz.gpr_vs_epsilon(ENTRIES, neighbours="add_remove").to_dict(), "bound_pp")["bound_pp"]
    assert (add.to_numpy() < sub.to_numpy()).all()


def test_gpr_vs_epsilon_bad_input():
    with pytest.raises(ConfigError, match="to hold at least one finite epsilon"):
        viz.gpr_vs_epsilon(ENTRIES[:1])
    with pytest.raises(ConfigError, match="Expected neighbours='swap'"):
        viz.gpr_vs_epsilon(ENTRIES, neighbours="swap")
    with pytest.raises(ConfigError, match="to provide epsilon and risk"):
        viz.gpr_vs_epsilon([{"epsilon": 1.0}])


def test_gprp_vs_epsilon_carries_the_ceiling_too():
    spec = viz.gprp_vs_epsilon(ENTRIES, delta=1e-5).to_dict()
    bound = _rows_with(spec, "epsilon", "bound_pp")
    assert len(bound) > 10
    assert bound["bound_pp"].max() == pytest.approx(100 * advantage_bound(8.0, 1e-5, neighbours="substitute"))


# ---------------------------------------------------------------- the membership game
def test_membership_game_diagram_matrix_and_the_attackers_best_threshold():
    groups = np.repeat([0, 1], 20)
    game = aloo_game(groups, n_models=8, m=10, seed=0)
    rng = np.random.default_rng(1)
    losses = rng.exponential(1.0, size=game.membership.shape)
    losses[game.membership] *= 0.5                        # members have lower loss
    target = int(game.audit_idx[3])
    chart = viz.membership_game_diagram(game, losses, record=target, n_records=6, n_models=8)
    spec = chart.to_dict()
    cells = _rows_with(spec, "model", "record", "in")
    assert len(cells) == 6 * 8
    # every audited record is in exactly half of the models
    assert (cells.groupby("record")["in"].apply(lambda s: (s == "member (trained on it)").sum()) == 4).all()
    dots = _rows_with(spec, "loss", "truth")
    assert np.allclose(np.sort(dots["loss"]), np.sort(losses[:, target]))
    # slow reference: try every threshold between sorted losses
    loss, member = losses[:, target], game.membership[:, target]
    best = max(np.mean((loss < t) == member) for t in [*loss, np.inf])
    assert f"accuracy {best:.2f}" in spec["description"]
    _draws(chart)
    with pytest.raises(ConfigError, match="to be an audited record"):
        viz.membership_game_diagram(game, losses, record=int(np.setdiff1d(np.arange(40), game.audit_idx)[0]))
    with pytest.raises(ConfigError, match="to have shape"):
        viz.membership_game_diagram(game, losses[:, :5])


def test_membership_game_diagram_without_losses_is_the_matrix():
    game = aloo_game(np.repeat([0, 1], 10), n_models=4, m=6, seed=0)
    spec = viz.membership_game_diagram(game, n_records=6, n_models=4).to_dict()
    assert len(_rows_with(spec, "model", "record", "in")) == 24


# ---------------------------------------------------------------- one DP-SGD step
def test_dp_sgd_step_frame_matches_the_engines_dp_step():
    torch = pytest.importorskip("torch")
    from fairpriv_lab.engine.privacy import DPSGD, DPStep

    rng = np.random.default_rng(0)
    grads = rng.normal(size=(7, 2)) * np.array([[0.3], [2.0], [0.1], [5.0], [1.0], [0.9], [1.1]])
    step = viz.dp_sgd_step_frame(grads, clip=1.0, noise_multiplier=0.0)
    engine = DPStep(policy=DPSGD(), clip=1.0, noise_multiplier=0.0, batch_size=7.0, n_groups=1)
    norms = torch.as_tensor(np.linalg.norm(grads, axis=1))[None]
    factors = engine.clip_factors(norms, torch.ones_like(norms), torch.ones_like(norms))
    assert np.allclose(step["factors"], factors.numpy()[0])
    assert np.allclose(step["sum"], (grads * factors.numpy()[0][:, None]).sum(0))
    assert np.allclose(step["update"], step["sum"] / 7)
    clipped = step["vectors"][step["vectors"]["stage"].str.startswith("2")]
    assert (clipped["norm"] <= 1.0 + 1e-9).all()


def test_dp_sgd_step_noise_has_scale_sigma_c_and_is_seeded():
    grads = np.ones((3, 2))
    noise = np.array([viz.dp_sgd_step_frame(grads, clip=2.0, noise_multiplier=1.5, seed=s)["noise"]
                      for s in range(2000)])
    assert noise.std() == pytest.approx(3.0, rel=0.05)
    a = viz.dp_sgd_step_frame(grads, clip=2.0, noise_multiplier=1.5, seed=7)["noise"]
    b = viz.dp_sgd_step_frame(grads, clip=2.0, noise_multiplier=1.5, seed=7)["noise"]
    c = viz.dp_sgd_step_frame(grads, clip=2.0, noise_multiplier=1.5, seed=8)["noise"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_dp_sgd_step_diagram_three_panels():
    chart = viz.dp_sgd_step_diagram(clip=1.0, noise_multiplier=1.0, seed=0)
    spec = chart.to_dict()
    assert len(spec["hconcat"]) == 3 and spec["resolve"]["scale"]["color"] == "independent"
    titles = [p["title"]["text"] for p in spec["hconcat"]]
    assert titles == ["1. Per-example gradients", "2. Clip each to norm ≤ C", "3. Sum, then add noise"]
    assert "1 of 6 shortened" in str(spec["hconcat"][1]["title"]["subtitle"])
    _draws(chart)
    with pytest.raises(ConfigError, match="to have shape \\(B, 2\\)"):
        viz.dp_sgd_step_frame(np.ones((3, 3)))
    with pytest.raises(ConfigError, match="Expected clip=0"):
        viz.dp_sgd_step_frame(np.ones((3, 2)), clip=0)

"""Altair chart builders for group privacy risk; every builder returns a chart, never displays.

Builders take plain tidy pandas DataFrames (columns documented on each) and, through thin
adapters, the result objects of ``risk``, ``audit``, ``training`` and ``empirical``,
duck-typed (anything with ``.by_group``, ``.ipr``/``.groups``, ``.telemetry``, ...).

Units: per-record IPR inputs are fractions (as in ``RecordRisk``); GPR, CIs, floors and GPRP
are percentage points (as in ``GroupRisk``); accuracies are fractions. Charts display risk in
percentage points and accuracy in percent.

Group colours come from a fixed colour-blind-safe palette in the order of ``group_order``
(default: sorted names); pass the same ``group_order`` to every builder to keep colours equal
across charts. Methods and auditors have fixed colours.

No chart embeds more than :data:`MAX_ROWS` rows: histograms, box plots, 2-D bins, ROC and
step thinning are computed in pandas first.

altair and vl-convert are imported on first use; without them every builder raises
``ImportError`` with :data:`MISSING_UI_MESSAGE` (``pip install fairpriv-lab[ui]``).
"""

from __future__ import annotations

from ._adapters import (
    by_group_frame,
    empirical_frame,
    grc_frame,
    paired_records,
    record_frame,
    sweep_frame,
    telemetry_frame,
)
from ._attack import empirical_vs_accounted_epsilon, roc_by_group, roc_curves
from ._core import (
    GROUP_PALETTE,
    HEIGHT,
    MAX_ROWS,
    MISSING_UI_MESSAGE,
    SERIES_COLORS,
    WIDTH,
    altair,
    group_palette,
    series_color,
    spec_dict,
    title_params,
)
from ._export import (
    VEGA_MIMETYPE,
    chart_mimebundle,
    enable_notebook_rendering,
    save_chart,
    static_image,
    to_png_bytes,
    to_svg,
    to_vega,
)
from ._risk import auditors_side_by_side, gpr_chart, ipr_distribution
from ._scatter import grc_vs_gpr, loo_vs_aloo
from ._sweep import (
    accuracy_gprp_frontier,
    clip_bounds_over_training,
    clipping_sweep,
    gprp_vs_epsilon,
)
from ._teach import (
    dp_bound_frame,
    dp_sgd_step_diagram,
    dp_sgd_step_frame,
    gpr_vs_epsilon,
    membership_game_diagram,
)

__all__ = [
    # building blocks of other layers' charts (studies): the lazy altair module, sizes, colours
    "altair",
    "HEIGHT",
    "WIDTH",
    "series_color",
    "title_params",
    # charts
    "gpr_chart",
    "auditors_side_by_side",
    "ipr_distribution",
    "roc_by_group",
    "gprp_vs_epsilon",
    "accuracy_gprp_frontier",
    "clip_bounds_over_training",
    "clipping_sweep",
    "grc_vs_gpr",
    "loo_vs_aloo",
    "empirical_vs_accounted_epsilon",
    "gpr_vs_epsilon",
    "membership_game_diagram",
    "dp_sgd_step_diagram",
    # adapters
    "by_group_frame",
    "record_frame",
    "paired_records",
    "sweep_frame",
    "telemetry_frame",
    "grc_frame",
    "empirical_frame",
    "roc_curves",
    "dp_bound_frame",
    "dp_sgd_step_frame",
    # export and display
    "spec_dict",
    "save_chart",
    "to_png_bytes",
    "to_svg",
    "static_image",
    "enable_notebook_rendering",
    "chart_mimebundle",
    "to_vega",
    "VEGA_MIMETYPE",
    # constants
    "group_palette",
    "GROUP_PALETTE",
    "SERIES_COLORS",
    "MAX_ROWS",
    "MISSING_UI_MESSAGE",
]

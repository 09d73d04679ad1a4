"""The teaching faces over ``experiment``: the ipywidgets panel, the HTML report, the demo.

ipywidgets and altair load on first use (the ``ui`` extra).
"""

from .demo import demo_configs, run_demo
from .panel import AuditPanel, PanelSettings, build_panel, default_settings
from .report import write_report

__all__ = [
    "AuditPanel",
    "PanelSettings",
    "build_panel",
    "default_settings",
    "demo_configs",
    "run_demo",
    "write_report",
]

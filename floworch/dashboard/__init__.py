"""The dashboard: a web UI over the HTTP API, shipped inside the package and served at ``/``.

Everything it shows comes from the public API under ``/api``; this package holds the page, its
ES modules and stylesheet (``static/``), the routes serving them (:mod:`.assets`) and the DAG
layout the API serves at ``/api/flows/{flowId}/graph`` (:mod:`.layout`).
"""

from floworch.dashboard.assets import DashboardAssets, DashboardAuth, dashboard_app, mount_dashboard
from floworch.dashboard.layout import FlowLayout, LaidEdge, LaidNode, layout_flow

__all__ = [
    "DashboardAssets",
    "DashboardAuth",
    "FlowLayout",
    "LaidEdge",
    "LaidNode",
    "dashboard_app",
    "layout_flow",
    "mount_dashboard",
]

"""The dashboard's files ship in the package: every module it imports is there, and the page
refers to its assets through one version."""

from __future__ import annotations

import re

from floworch.dashboard.assets import AUTH_MARK, VERSION_MARK, DashboardAssets, DashboardAuth

_IMPORT = re.compile(r"""^\s*import\s.*?from\s+['"](\.[^'"]+)['"]""", re.M | re.S)


def test_every_relative_import_names_a_shipped_module() -> None:
    assets = DashboardAssets.load()
    modules = [name for name in assets.files if name.endswith(".js")]
    assert {"app.js", "api.js", "live.js", "dag.js", "pages/run.js"} <= set(modules)
    for name in modules:
        folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        for target in _IMPORT.findall(assets.files[name].decode()):
            parts = (folder + target).split("/")
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part not in (".", ""):
                    resolved.append(part)
            assert "/".join(resolved) in assets.files, f"{name} imports missing {target}"


def test_the_page_names_its_assets_by_version() -> None:
    assets = DashboardAssets.load()
    page = assets.page().decode()
    assert VERSION_MARK not in page
    assert f'src="assets/{assets.version}/app.js"' in page
    assert f'href="assets/{assets.version}/style.css"' in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


def test_the_page_says_how_its_api_is_guarded() -> None:
    assets = DashboardAssets.load()
    meta = '<meta name="floworch-auth" content="{}">'
    assert meta.format("bearer") in assets.page().decode()
    on_functions = assets.page(DashboardAuth.FUNCTION_KEY).decode()
    assert meta.format("function-key") in on_functions and AUTH_MARK not in on_functions


def test_the_version_is_a_digest_of_the_files() -> None:
    one = DashboardAssets.load()
    assert DashboardAssets.load().version == one.version
    changed = dict(one.files)
    changed["app.js"] = changed["app.js"] + b"\n"
    assert DashboardAssets(files=changed, version="x").files != one.files
    assert re.fullmatch(r"[0-9a-f]{12}", one.version)


def test_no_asset_loads_anything_from_another_origin() -> None:
    for name, body in DashboardAssets.load().files.items():
        text = body.decode()
        assert not re.search(r"""(src|href|from|import)\s*=?\s*['"]https?://""", text), name
        assert "cdn" not in text.lower(), name

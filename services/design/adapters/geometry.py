"""The geometry engine behind the request path's port (services.design.domain.ports)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.design.domain.ports import MaterialInfo, RuleSetInfo


class EngineChecks:
    """services.design.geometry's fast functions; the module is imported on first use, since
    CadQuery takes seconds to import."""

    def check_upload(self, path: Path, format: str) -> None:
        from services.design import geometry

        geometry.check_upload(path, format)

    def rule_sets(self) -> Mapping[str, RuleSetInfo]:
        from services.design import geometry

        found: Mapping[str, RuleSetInfo] = geometry.rule_sets()
        return found

    def materials(self) -> Mapping[str, MaterialInfo]:
        from services.design import geometry

        found: Mapping[str, MaterialInfo] = geometry.materials()
        return found

    def script_parameters(self, source: str) -> Mapping[str, Any]:
        from services.design import geometry

        declared: Mapping[str, Any] = geometry.script_parameters(source)
        return declared

"""The studies shipped with btnet-lab: YAML files in this folder, found by name.

    shipped_studies()            {"demo": Path(".../demo.yaml"), ...}
    find_study("paper_ablation") the shipped file
    find_study("my_study.yaml")  a path works as well

The schema of a study file is described in ``docs/studies.md``.
"""

from __future__ import annotations

from pathlib import Path

from btnet_core.errors import ConfigError

#: The study ``btnet-lab sweep`` runs with no argument.
DEMO = "demo"
FOLDER = Path(__file__).resolve().parent


def shipped_studies() -> dict[str, Path]:
    """Name -> file of every study shipped in this folder."""
    return {p.stem: p for p in sorted(FOLDER.glob("*.yaml"))}


def find_study(name_or_path: str | Path) -> Path:
    """A study file from a path or the name of a shipped study.

    A path that exists wins over a shipped name; a name may be given with or without
    ``.yaml``.

    Raises:
        ConfigError: Neither a file nor a shipped study (the message lists the shipped ones).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_studies()
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if str(path.parent) == "." and stem in shipped:
        return shipped[stem]
    raise ConfigError(
        f"{name_or_path}: no such study file or shipped study; shipped: "
        f"{', '.join(shipped) or 'none'}"
    )


__all__ = ["DEMO", "FOLDER", "find_study", "shipped_studies"]

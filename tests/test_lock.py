"""requirements.lock (what `make audit` checks) must be an install of today's setup.cfg: every declared
requirement, core and extras, is in it at a version the declaration allows. A floor raised for an advisory
without regenerating the lock fails here, so the audit never checks a stale set of versions.
"""

from __future__ import annotations

import configparser
import pathlib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = pathlib.Path(__file__).resolve().parents[1]


def declared_requirements() -> list[Requirement]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in config["options.extras_require"].values():
        lines += extra.splitlines()
    return [Requirement(line) for line in (line.strip() for line in lines) if line and not line.startswith("#")]


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, separator, version = line.partition("==")
            assert separator, f"requirements.lock: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_holds_every_declared_requirement_at_an_allowed_version():
    pins = locked_versions()
    requirements = declared_requirements()
    assert any(requirement.name == "apache-beam" for requirement in requirements)  # the extras were read
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared in setup.cfg but missing from requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock has {requirement.name}=={pins[name]}, outside setup.cfg's {requirement}: "
            "regenerate the lock (see the Makefile's audit target)")

"""Fixtures for the template tests: template.yaml parsed once and translated once per session."""

from __future__ import annotations

import pytest

from sam_template import Resolver, load_sam, translate


@pytest.fixture(scope="session")
def sam() -> dict:
    """template.yaml as written (SAM)."""
    return load_sam()


@pytest.fixture(scope="session")
def cfn(sam) -> dict:
    """template.yaml after the SAM transform (CloudFormation)."""
    return translate(sam)


@pytest.fixture(scope="session")
def resolve(cfn) -> Resolver:
    """Intrinsics resolved with the parameter defaults."""
    return Resolver(cfn)

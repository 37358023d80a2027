"""Shared fixtures: small threads, deterministic seeds, and the reference walloc when installed."""
import importlib
import warnings

import pytest
import torch

torch.set_num_threads(2)


def import_walloc():
    """walloc 1.2.1 (the reference), or skip: it needs diffusers, pytorch-wavelets and setuptools<82."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module("walloc.walloc")
    except Exception as e:  # ImportError, or pkg_resources missing under setuptools>=82
        pytest.skip(f"reference walloc 1.2.1 not importable ({type(e).__name__}: {e}); "
                    "install the test extra 'compat' to run compatibility tests")


@pytest.fixture
def walloc_ref():
    return import_walloc()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

"""Shared fixtures: small threads, deterministic seeds, the reference walloc when installed, and a
loopback-only network: a Hugging Face hub stand-in (tests/hubserver.py) is HF_ENDPOINT for the whole
session, set before anything imports huggingface_hub, and any socket connecting beyond 127.0.0.1 fails."""
import importlib
import os
import socket
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import HubStandIn  # noqa: E402

HUB = HubStandIn()
_HF_HOME = tempfile.mkdtemp(prefix="walloc-cdl-test-hf-")
os.environ.update({"HF_ENDPOINT": HUB.url, "HF_HOME": _HF_HOME, "HF_HUB_CACHE": os.path.join(_HF_HOME, "hub"),
                   "HF_DATASETS_CACHE": os.path.join(_HF_HOME, "datasets"), "HF_HUB_DISABLE_TELEMETRY": "1",
                   "HF_HUB_DISABLE_XET": "1", "WALLOC_CDL_CACHE": os.path.join(_HF_HOME, "walloc-cdl"),
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"})
for _k in ("HF_TOKEN", "HF_HUB_OFFLINE", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_k, None)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

_connect = socket.socket.connect


def _loopback_only(self, address):  # a test that reaches beyond this machine fails instead
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and self.family in (socket.AF_INET, socket.AF_INET6):
        if not (host in ("localhost", "::1") or str(host).startswith("127.")):
            raise OSError(f"test tried to connect to {address}: only loopback is allowed")
    return _connect(self, address)


socket.socket.connect = _loopback_only


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


@pytest.fixture(scope="session")
def hub():
    """The session's hub stand-in (HF_ENDPOINT points at it); give each test its own repo names."""
    return HUB

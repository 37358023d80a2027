"""Install-level promises: no pkg_resources / diffusers / pytorch-wavelets at runtime, a working CLI."""
import subprocess
import sys

import pytest

from walloc_cdl.cli import COMMANDS


def test_runtime_needs_no_pkg_resources_diffusers_or_pytorch_wavelets():
    code = (
        "import sys\n"
        "for m in ('pkg_resources', 'diffusers', 'pytorch_wavelets', 'walloc'): sys.modules[m] = None\n"
        "import torch, walloc_cdl\n"
        "c = walloc_cdl.Codec2D(3, 3, None, 32, 12, 8, True).eval()\n"
        "z = c.encode(torch.rand(1, 3, 64, 64) - 0.5)\n"
        "assert z.shape == (1, 12, 8, 8)\n"
        "c1 = walloc_cdl.Codec1D(2, 4, 64, 64, 32, 8, False, True).eval()\n"
        "assert c1.decode(c1.encode(torch.rand(1, 2, 256) - 0.5)).shape == (1, 2, 256)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name):
    out = subprocess.run([sys.executable, "-m", "walloc_cdl.cli", name, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"walloc-cdl {name}" in out.stdout and len(out.stdout) > 200
    # defaults resolved later (from a preset) must not print as "None"; on/off flags print no default
    flat = " ".join(out.stdout.split())
    assert "(default: None)" not in flat and "(default: False)" not in flat, out.stdout


def test_top_level_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "walloc_cdl.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


def test_info_describes_an_official_checkpoint(tmp_path):
    from walloc_cdl import Codec2D, save_codec
    path = save_codec(Codec2D(3, 2, None, 32, 12, 8, True), tmp_path / "c", official=True)
    out = subprocess.run([sys.executable, "-m", "walloc_cdl.cli", "info", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "4.0x fewer values" in out.stdout and "encoder sha256" in out.stdout and len(out.stdout.splitlines()) <= 8
    full = subprocess.run([sys.executable, "-m", "walloc_cdl.cli", "info", str(path), "--json"], capture_output=True,
                          text=True)
    assert '"dimensionality_reduction": 4.0' in full.stdout and '"weights_sha256"' in full.stdout


def test_lazy_exports_resolve_and_stay_lazy():
    code = ("import sys, walloc_cdl\n"
            "assert 'timm' not in sys.modules and 'webdataset' not in sys.modules\n"
            "for n in walloc_cdl.__all__: getattr(walloc_cdl, n)\n"
            "assert 'timm' in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

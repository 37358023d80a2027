"""load_codec / save_codec: formats, refusal of code-carrying pickles, clear mismatch errors."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from walloc_cdl import CheckpointError, Codec1D, Codec2D, load_codec, save_codec, state_dict_sha256

CFG = dict(channels=3, J=2, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True)


def _same(a, b):
    x = torch.rand(1, a.channels, 32, 32) - 0.5
    with torch.no_grad():
        return torch.equal(a.encode(x), b.encode(x)) and torch.allclose(a(x)[0], b(x)[0])


def test_safetensors_round_trip(tmp_path):
    codec = Codec2D(**CFG).eval()
    path = save_codec(codec, tmp_path / "mine", metadata={"note": "test"})
    assert path.suffix == ".safetensors"
    assert json.loads(path.with_suffix(".json").read_text())["note"] == "test"
    loaded = load_codec(path)
    assert not loaded.training and loaded.config == CFG
    assert state_dict_sha256(loaded) == state_dict_sha256(codec)
    assert _same(codec, loaded)


def test_saved_codec_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_codec(Codec2D(**CFG), tmp_path / "shared")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, as a codec to share should be


def test_official_export_round_trip(tmp_path):
    codec = Codec1D(channels=1, J=3, Ne=None, Nd=32, latent_dim=4, latent_bits=8, lightweight_encode=True,
                    post_filter=False).eval()
    path = save_codec(codec, tmp_path / "mono", official=True)
    assert path.suffix == ".pth" and path.with_suffix(".json").exists()
    loaded = load_codec(path)
    assert isinstance(loaded, Codec1D) and state_dict_sha256(loaded) == state_dict_sha256(codec)


def _run_in_subprocess(code: str, cwd):
    """Pickles referencing classes must be written from a real __main__, as notebooks did."""
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, check=True)


def test_embedded_notebook_config_is_read_without_running_code(tmp_path):
    codec = Codec2D(**CFG)
    torch.save({"sd": codec.state_dict()}, tmp_path / "sd.pt")
    _run_in_subprocess(f"""
        import torch
        class Config:
            def __init__(self):
                for k, v in {CFG!r}.items(): setattr(self, k, v)
                self.learning_rate = 1e-3
        sd = torch.load("sd.pt")["sd"]
        torch.save({{"model_state_dict": sd, "config": Config(), "epoch": 7}}, "nb.pth")
    """, tmp_path)
    loaded = load_codec(tmp_path / "nb.pth")
    assert loaded.config == CFG
    assert state_dict_sha256(loaded) == state_dict_sha256(codec)


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    _run_in_subprocess(f"""
        import os, torch
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save({{"model_state_dict": {{}}, "config": Payload()}}, "evil.pth")
    """, tmp_path)
    (tmp_path / "evil.json").write_text(json.dumps(CFG))
    with pytest.raises(CheckpointError, match="refused to unpickle.*(posix|os)\\.system"):
        load_codec(tmp_path / "evil.pth")
    assert not marker.exists()


def test_evil_global_named_config_is_still_refused(tmp_path):
    """A class called Config whose reduce calls a function: the function global is refused."""
    marker = tmp_path / "pwned"
    _run_in_subprocess(f"""
        import os, torch
        class Config:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save({{"model_state_dict": {{}}, "config": Config()}}, "evil.pth")
    """, tmp_path)
    with pytest.raises(CheckpointError):
        load_codec(tmp_path / "evil.pth", config=CFG)
    assert not marker.exists()


def test_mismatched_config_names_key_and_shapes(tmp_path):
    path = save_codec(Codec2D(**CFG), tmp_path / "c", official=True)
    wrong = dict(CFG, latent_dim=16)
    with pytest.raises(CheckpointError, match=r"'encoder\.0\.weight'.*\(16, 48, 1, 1\).*\(12, 48, 1, 1\)"):
        load_codec(path, config=wrong)


def test_missing_config_says_what_to_do(tmp_path):
    torch.save({"model_state_dict": Codec2D(**CFG).state_dict()}, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="bare.json"):
        load_codec(tmp_path / "bare.pth")


def test_unknown_name_lists_shipped_codecs():
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_codec("no-such-codec")


def test_device_and_eval(tmp_path):
    path = save_codec(Codec2D(**CFG).train(), tmp_path / "d")
    codec = load_codec(path, device="cpu")
    assert not codec.training and next(codec.parameters()).device.type == "cpu"

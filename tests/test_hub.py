"""Codecs by hub name against the loopback hub stand-in (tests/hubserver.py, HF_ENDPOINT set by conftest):
.pth + .json, embedded config, our safetensors, revision pins, official bare names, offline hits and
misses, push_to_hub round trips, and the CLI's --codec options."""
import io
import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
import torch

from walloc_cdl import load_codec, save_codec, state_dict_sha256
from walloc_cdl.codec.hub import HubError, HubRef, parse_hub_name


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh hub cache for this test (huggingface_hub reads constants.HF_HUB_CACHE at call time)."""
    from huggingface_hub import constants

    d = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(d))
    return d


def _org() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _files(tmp_path, name, official, **kw):
    """Bytes of a saved codec (shipped gray-4x's weights) as {filename: bytes}."""
    codec = load_codec("gray-4x")
    path = save_codec(codec, tmp_path / "src" / name, official=official, **kw)
    return codec, {p.name: p.read_bytes() for p in (path, path.with_suffix(".json"))}


def test_parse_hub_name():
    assert parse_hub_name("hf://danjacobellis/walloc/RGB_16x") == HubRef("danjacobellis/walloc", "RGB_16x")
    assert parse_hub_name("hf://o/r@v1.0/sub/NAME") == HubRef("o/r", "sub/NAME", "v1.0")
    assert parse_hub_name("hf://datasets/o/d@refs%2Fconvert%2Fparquet/train") == \
        HubRef("o/d", "train", "refs/convert/parquet", "dataset")
    assert parse_hub_name("hf://datasets/o/d").url() == "hf://datasets/o/d"
    assert parse_hub_name("hf://o/r@refs%2Fpr%2F1/x").url() == "hf://o/r@refs%2Fpr%2F1/x"
    for bad in ("hf://onlyorg", "hf://o/r/../x", "https://o/r/x"):
        with pytest.raises(HubError, match="hub"):
            parse_hub_name(bad)


def test_pth_with_json_beside_it(hub, tmp_path, cache):
    org = _org()
    codec, files = _files(tmp_path, "RGB_x", official=True)
    assert set(files) == {"RGB_x.pth", "RGB_x.json"}
    hub.commit(f"{org}/walloc", files)
    loaded = load_codec(f"hf://{org}/walloc/RGB_x")
    assert state_dict_sha256(loaded) == state_dict_sha256(codec) and not loaded.training
    assert list(cache.glob(f"models--{org}--walloc/snapshots/*/RGB_x.json"))  # beside the weights


def test_pth_with_embedded_config(hub, tmp_path, cache):
    codec = load_codec("gray-4x")
    buf = io.BytesIO()
    torch.save({"model_state_dict": codec.state_dict(), "config": dict(codec.config)}, buf)
    org = _org()
    hub.commit(f"{org}/w", {"Gray_Li_4c_J2_nf8_v1.0.2.pth": buf.getvalue()})  # no .json in the repo
    loaded = load_codec(f"hf://{org}/w/Gray_Li_4c_J2_nf8_v1.0.2")
    assert state_dict_sha256(loaded) == state_dict_sha256(codec)


def test_pickled_code_in_a_hub_checkpoint_is_refused(hub, tmp_path, cache):
    buf = io.BytesIO()
    torch.save({"model_state_dict": {}, "evil": os.system}, buf)  # a global that could run code
    org = _org()
    hub.commit(f"{org}/w", {"bad.pth": buf.getvalue()})
    with pytest.raises(Exception, match="refused to unpickle"):
        load_codec(f"hf://{org}/w/bad")


def test_our_safetensors_and_push_to_hub_round_trip(hub, tmp_path, cache):
    org = _org()
    codec = load_codec("gray-4x")
    path = save_codec(codec, tmp_path / "mine", push_to_hub=f"{org}/codecs")
    assert path.exists()  # saved locally too
    tree = hub.tree(f"{org}/codecs")
    assert tree["mine.safetensors"] == path.read_bytes() and "mine.json" in tree
    assert [m for m, p in hub.requests if p.startswith(f"/api/models/{org}/codecs/commit/")] == ["POST"]  # one commit
    loaded = load_codec(f"hf://{org}/codecs/mine")
    assert state_dict_sha256(loaded) == state_dict_sha256(codec)
    # a file name with its suffix works too
    assert state_dict_sha256(load_codec(f"hf://{org}/codecs/mine.safetensors")) == state_dict_sha256(codec)


def test_revision_pin(hub, tmp_path, cache):
    org = _org()
    a = load_codec("gray-4x")
    b = load_codec("gray-16x")
    pa = save_codec(a, tmp_path / "a" / "c")
    pb = save_codec(b, tmp_path / "b" / "c")
    sha1 = hub.commit(f"{org}/r", {"c.safetensors": pa.read_bytes(), "c.json": pa.with_suffix(".json").read_bytes()})
    hub.commit(f"{org}/r", {"c.safetensors": pb.read_bytes(), "c.json": pb.with_suffix(".json").read_bytes()})
    hub.commit(f"{org}/r", {"c.safetensors": pa.read_bytes(), "c.json": pa.with_suffix(".json").read_bytes()},
               branch="v1")
    assert state_dict_sha256(load_codec(f"hf://{org}/r/c")) == state_dict_sha256(b)
    assert state_dict_sha256(load_codec(f"hf://{org}/r@{sha1}/c")) == state_dict_sha256(a)
    assert state_dict_sha256(load_codec(f"hf://{org}/r@v1/c")) == state_dict_sha256(a)
    with pytest.raises(HubError, match="revision 'nope' not found"):
        load_codec(f"hf://{org}/r@nope/c")


def test_missing_names_are_one_clear_error(hub, tmp_path, cache):
    org = _org()
    hub.commit(f"{org}/r", {"README.md": b"hi"})
    with pytest.raises(HubError, match=r"has no x\.safetensors or x\.pth"):
        load_codec(f"hf://{org}/r/x")
    with pytest.raises(HubError, match=rf"^hf://{org}/absent/x: repository {org}/absent not found on http://127"):
        load_codec(f"hf://{org}/absent/x")
    with pytest.raises(HubError, match="model repos"):
        load_codec(f"hf://datasets/{org}/r/x")


def test_official_bare_names_resolve_to_walloc_repo_and_offline_hits_cache(hub, tmp_path, cache, monkeypatch):
    from huggingface_hub import constants

    codec, files = _files(tmp_path, "RGB_16x", official=True)
    hub.commit("danjacobellis/walloc", files)
    before = len(hub.requests)
    loaded = load_codec("RGB_16x")
    assert state_dict_sha256(loaded) == state_dict_sha256(codec)
    assert ("GET", "/danjacobellis/walloc/resolve/main/RGB_16x.pth") in hub.requests[before:]
    # a local file of that name wins over the hub
    local = save_codec(load_codec("gray-16x"), tmp_path / "here" / "RGB_16x", official=True)
    monkeypatch.chdir(local.parent)
    assert state_dict_sha256(load_codec("RGB_16x.pth")) != state_dict_sha256(codec)
    # offline: the cache answers, the stand-in hears nothing
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    assert state_dict_sha256(load_codec("hf://danjacobellis/walloc/RGB_16x")) == state_dict_sha256(codec)
    assert len(hub.requests) == before


def test_offline_miss_names_file_cache_and_fix(hub, tmp_path, cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    with pytest.raises(HubError) as e:
        load_codec("hf://danjacobellis/walloc/stereo_5x")
    msg = str(e.value)
    assert "\n" not in msg and "stereo_5x.pth" in msg and str(cache) in msg and "HF_HUB_OFFLINE" in msg
    assert "hf download danjacobellis/walloc stereo_5x.pth stereo_5x.json" in msg
    assert msg.startswith("hf://danjacobellis/walloc/stereo_5x: stereo_5x.pth or stereo_5x.safetensors is not in")
    assert len(hub.requests) == before


def _cli(args, env, cwd=None):
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "walloc_cdl.cli", *args], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=300)


def test_cli_honours_hf_env_and_every_codec_option(hub, tmp_path):
    """A fresh interpreter reads HF_ENDPOINT, HF_HUB_CACHE, HF_TOKEN and HF_HUB_OFFLINE from the environment."""
    org = _org()
    codec, files = _files(tmp_path, "g4", official=False)
    hub.commit(f"{org}/c", files)
    name = f"hf://{org}/c/g4"
    env = {"HF_HUB_CACHE": str(tmp_path / "cache"), "HF_TOKEN": "hf_loopbacktoken"}
    r = _cli(["info", name, "--json"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["weights_sha256"] == state_dict_sha256(codec)
    assert list((tmp_path / "cache").glob(f"models--{org}--c/snapshots/*/g4.safetensors"))
    assert "Bearer hf_loopbacktoken" in hub.auth
    # without HF_HUB_CACHE the cache is HF_HOME/hub
    home = {k: v for k, v in env.items() if k != "HF_HUB_CACHE"}
    r = subprocess.run([sys.executable, "-m", "walloc_cdl.cli", "info", name], capture_output=True, text=True,
                       env={**{k: v for k, v in os.environ.items() if k != "HF_HUB_CACHE"}, **home,
                            "HF_HOME": str(tmp_path / "home")}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "home" / "hub").glob(f"models--{org}--c/snapshots/*/g4.safetensors"))
    # encode and preview take the same names
    from PIL import Image

    img = tmp_path / "imgs" / "a.png"
    img.parent.mkdir()
    Image.fromarray((np.arange(32 * 32) % 251).astype(np.uint8).reshape(32, 32)).save(img)
    r = _cli(["encode", str(img.parent), str(tmp_path / "out"), "--codec", name, "--workers", "0",
              "--no-progress"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "out" / "_info.json").read_text())["codec"]["name"] == name
    r = _cli(["preview", str(img), "--codec", name, "--out", str(tmp_path / "pv")], env)
    assert r.returncode == 0, r.stderr
    # offline, cached: works; offline, fresh cache: one line naming file, cache and fix, no traceback
    assert _cli(["info", name], {**env, "HF_HUB_OFFLINE": "1"}).returncode == 0
    r = _cli(["info", name], {**env, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "g4.safetensors or g4.pth" in lines[0] and str(tmp_path / "empty") in lines[0]


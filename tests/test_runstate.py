"""runstate: an interrupted comparison resumes exactly; finished runs are reused only when nothing changed."""
import json

import pytest
import timm
import torch

from walloc_cdl import compare
from walloc_cdl.compare import CompareConfig, run_comparison, train_and_evaluate
from walloc_cdl.runstate import RunCheckpoint, RunLedger, data_fingerprint, load_optimizer_tensors, \
    optimizer_tensors, signature
from test_compare import _image_bench


def _model(seed):
    torch.manual_seed(seed)  # dropout draws from the global RNG: a resume that lost it would diverge
    return timm.create_model("resnet10t", num_classes=4, in_chans=1, drop_rate=0.5)


def test_an_interrupted_run_resumes_bit_identical(tmp_path, monkeypatch):
    b = _image_bench()
    cfg = CompareConfig(epochs=3, batch_size=16, lr=3e-3)  # 6 steps an epoch, 18 in all
    cpu = torch.device("cpu")
    ref = _model(0)
    want = train_and_evaluate(ref, b.x_train, b.y_train, b.tests, cfg, 0, cpu, progress=False)

    ckpt = RunCheckpoint(tmp_path / "run.safetensors", every_s=0.0)
    real, saves = RunCheckpoint.maybe_save, []

    def crash_after_eight(self, *a, **k):
        saved = real(self, *a, **k)
        saves.append(saved)
        if len(saves) == 8:
            raise KeyboardInterrupt  # the machine goes away right after the 8th step's checkpoint
        return saved

    monkeypatch.setattr(RunCheckpoint, "maybe_save", crash_after_eight)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(_model(0), b.x_train, b.y_train, b.tests, cfg, 0, cpu, progress=False, checkpoint=ckpt)
    monkeypatch.setattr(RunCheckpoint, "maybe_save", real)
    torch.manual_seed(123)  # the process that resumes starts from another RNG state
    again = _model(0)
    got = train_and_evaluate(again, b.x_train, b.y_train, b.tests, cfg, 0, cpu, progress=False, checkpoint=ckpt)
    assert got["resumed_from_step"] == 8 and got["steps"] == 18
    assert got["acc"] == want["acc"] and got["final_train_loss"] == want["final_train_loss"]
    for k, v in ref.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_resume_without_the_rng_state_would_diverge(tmp_path):
    """The check above has teeth: the same resume with the RNG state dropped ends elsewhere."""
    b = _image_bench()
    cfg = CompareConfig(epochs=2, batch_size=16, lr=3e-3)
    cpu = torch.device("cpu")
    ref = _model(0)
    train_and_evaluate(ref, b.x_train, b.y_train, b.tests, cfg, 0, cpu, progress=False)
    half = RunCheckpoint(tmp_path / "half.safetensors", every_s=1e9)
    m = _model(0)
    opt = torch.optim.AdamW(m.parameters())
    half.maybe_save(m, opt, lambda: {}, force=True)
    from safetensors.torch import load_file, save_file

    t = load_file(str(half.path))
    t["rng/cpu"] = torch.manual_seed(999).get_state()
    save_file(t, str(half.path), metadata={"run_state": json.dumps({"step": 0, "total": 12, "timed_s": 0.0,
                                                                      "timed_samples": 0, "loss_sum": 0.0})})
    other = _model(0)
    train_and_evaluate(other, b.x_train, b.y_train, b.tests, cfg, 0, cpu, progress=False, checkpoint=half)
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in ref.state_dict().items())


def test_optimizer_tensors_round_trip():
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(m.parameters())
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    t = optimizer_tensors(m.named_parameters(), opt)
    assert set(t) == {f"{n}/{k}" for n in ("weight", "bias") for k in ("step", "exp_avg", "exp_avg_sq")}
    m2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(m2.parameters())
    load_optimizer_tensors(m2.named_parameters(), opt2, t)
    for p, q in zip(m.parameters(), m2.parameters()):
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][k], opt2.state[q][k])
    with pytest.raises(KeyError, match="unknown parameter"):
        load_optimizer_tensors(m2.named_parameters(), opt2, {"nope/exp_avg": torch.zeros(1)})


def test_signatures_see_what_changes_a_result():
    b = _image_bench()
    assert signature({"a": 1, "b": [2]}) == signature({"b": [2], "a": 1})
    assert signature({"a": 1}) != signature({"a": 2})
    x2 = b.x_train.clone()
    x2[-1, 0, 0, 0] ^= 1
    assert data_fingerprint(b.x_train, b.y_train) != data_fingerprint(x2, b.y_train)
    assert data_fingerprint(b.x_train, b.y_train) != data_fingerprint(b.x_train[:-1], b.y_train[:-1])


def test_ledger_reuses_finished_runs_and_retrains_what_changed(tmp_path, monkeypatch):
    b = _image_bench()
    cfg = CompareConfig(epochs=1, batch_size=16, lr=3e-3)
    cpu = torch.device("cpu")
    first = run_comparison(b, "resnet10t", [16.0], [0], cfg, cpu, include_full=False, progress=False,
                           ledger=RunLedger(tmp_path / "state", resume=False))
    calls = []
    real = compare.train_and_evaluate
    monkeypatch.setattr(compare, "train_and_evaluate", lambda *a, **k: calls.append(a[5]) or real(*a, **k))
    more = run_comparison(b, "resnet10t", [16.0], [0, 1], cfg, cpu, include_full=False, progress=False,
                          ledger=RunLedger(tmp_path / "state", resume=True))
    assert calls == [1]  # seed 0 came from the ledger
    assert more["runs"][0] == first["runs"][0] and [r["seed"] for r in more["runs"]] == [0, 1]
    assert more["summary"][0]["n_seeds"] == 2
    longer = CompareConfig(epochs=2, batch_size=16, lr=3e-3)
    run_comparison(b, "resnet10t", [16.0], [0, 1], longer, cpu, include_full=False, progress=False,
                   ledger=RunLedger(tmp_path / "state", resume=True))
    assert calls == [1, 0, 1]  # another budget: nothing reused


def test_ledger_refuses_to_throw_away_an_interrupted_comparison(tmp_path):
    led = RunLedger(tmp_path / "state", resume=False)
    inflight = led.checkpoint("latent-16x", 0, "abc").path
    inflight.parent.mkdir(parents=True)
    inflight.write_bytes(b"x")
    led.record("abc", {"seed": 0})
    assert not inflight.exists()  # a finished run's checkpoint goes with its record
    with pytest.raises(FileExistsError, match="--resume"):
        RunLedger(tmp_path / "state", resume=False)
    assert RunLedger(tmp_path / "state", resume=True).finished("abc") == {"seed": 0}
    led.complete()
    fresh = RunLedger(tmp_path / "state", resume=False)  # a finished comparison may be started over
    assert not fresh.file.exists() and fresh.finished("abc") is None
    (tmp_path / "state" / "runs.jsonl").write_text('{"signature": "x", "record": {"seed": 1}}\n{"signat')
    torn = RunLedger(tmp_path / "state", resume=True)  # a line cut by the crash is skipped, not fatal
    assert torn.finished("x") == {"seed": 1}


def test_a_torn_checkpoint_says_which_file(tmp_path):
    p = tmp_path / "ckpt" / "latent-seed0-abc.safetensors"
    p.parent.mkdir()
    p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    m = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="latent-seed0-abc.safetensors"):
        RunCheckpoint(p, 60).load(m, torch.optim.AdamW(m.parameters()))

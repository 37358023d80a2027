"""training.loop: checkpoints carry weights, optimizer moments and every generator; the step accumulates."""
import random

import numpy as np
import pytest
import torch

from walloc_cdl.training.loop import (CheckpointError, Stepper, load_checkpoint, load_optimizer_tensors,
                                      optimizer_tensors, save_checkpoint)


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


def _draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_checkpoint_restores_weights_moments_and_every_generator(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.AdamW(m.parameters())
    m(torch.randn(8, 3)).sum().backward()
    opt.step()
    np.random.seed(1)
    random.seed(2)
    save_checkpoint(tmp_path / "c.safetensors", {"model": m}, opt, {"epoch": 3, "history": [{"a": 1}]})
    after = _draws()
    m2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt2 = torch.optim.AdamW(m2.parameters())
    _draws()                                    # move every generator on
    state = load_checkpoint(tmp_path / "c.safetensors", {"model": m2}, opt2)
    assert state == {"epoch": 3, "history": [{"a": 1}]}
    assert _draws() == after                    # torch, numpy and Python continue where they were saved
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(opt.state[m[0].weight]["exp_avg"], opt2.state[m2[0].weight]["exp_avg"])
    assert not list(tmp_path.glob(".*.tmp"))   # written through a temporary file, renamed


def test_a_torn_checkpoint_says_which_file(tmp_path):
    bad = tmp_path / "last.safetensors"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="last.safetensors"):
        load_checkpoint(bad, {"model": torch.nn.Linear(1, 1)}, None)


@pytest.mark.parametrize("accum", [1, 3])
def test_stepper_accumulates_to_the_mean_gradient(accum):
    """accum micro-batches of b give the update of one batch of accum*b (mean losses), updates counted."""
    torch.manual_seed(0)
    x, y = torch.randn(12, 5), torch.randn(12, 1)
    ref, acc = torch.nn.Linear(5, 1), torch.nn.Linear(5, 1)
    acc.load_state_dict(ref.state_dict())
    o1, o2 = torch.optim.SGD(ref.parameters(), lr=0.1), torch.optim.SGD(acc.parameters(), lr=0.1)
    loss = torch.nn.functional.mse_loss
    Stepper(ref, o1, torch.device("cpu"))(lambda: loss(ref(x), y))
    s = Stepper(acc, o2, torch.device("cpu"), accum_steps=accum, grad_clip=1e6)
    for part in torch.arange(12).chunk(accum):
        s(lambda: loss(acc(x[part]), y[part]))
    assert s.updates == 1 and s.micro == 0
    for a, b in zip(ref.parameters(), acc.parameters()):
        torch.testing.assert_close(a, b)


def test_stepper_after_step_runs_once_per_update_before_the_ema():
    """The hook (the codec trainer's gain pinning) sees each update once, after the optimizer step, and the
    EMA averages the weights it leaves."""
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 1)
    seen = []

    def hook():
        seen.append(m.weight.detach().clone())
        with torch.no_grad():
            m.weight.zero_()

    class Ema:
        def update(self, model, step):
            assert torch.equal(model.weight, torch.zeros_like(model.weight)), "EMA ran before the hook"
            seen.append(step)

    s = Stepper(m, torch.optim.SGD(m.parameters(), lr=0.1), torch.device("cpu"), accum_steps=2, ema=Ema(),
                after_step=hook)
    x = torch.randn(4, 3)
    for _ in range(4):
        s(lambda: m(x).pow(2).mean())
    assert s.updates == 2 and [v for v in seen if isinstance(v, int)] == [1, 2] and len(seen) == 4

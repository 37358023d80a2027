"""The pieces every training run here shares: checkpoints that resume exactly, and the step itself.

A checkpoint is one safetensors file (no pickle): the modules' tensors under ``NAME/``, the optimizer's
moments under ``optim/``, and in its JSON header the loop's position and every random generator's state
(torch, numpy, Python; one set per DDP rank), so a run killed with ``kill -9`` continues as if it never
stopped: on the CPU its final weights equal those of an uninterrupted run (tests/test_train.py).  It is
written to a temporary file and renamed, so a crash mid-write leaves the previous checkpoint intact.

``Stepper`` is one optimisation step as timm's ``train.py`` takes it: bf16 autocast on CUDA, gradient
accumulation (DDP gradients synchronised on the last micro-batch only), gradient clipping, the optimizer
step, an optional ``after_step`` hook (the codec trainer pins its encoder's gain there), the scheduler's
``step_update`` and the EMA update.
"""
from __future__ import annotations

import base64
import contextlib
import json
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from ..files import atomic_path


# -- optimizer state as named tensors (safetensors can store them; the codec trainer uses them too) --
def optimizer_tensors(named_params: Iterable[tuple[str, torch.nn.Parameter]],
                      opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """``{"<param name>/<state key>": tensor}`` for every tensor in the optimizer's state (AdamW: the
    moments and the step count), on the CPU: what safetensors can store."""
    names = {id(p): n for n, p in named_params}
    out: dict[str, torch.Tensor] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v):
                    out[f"{names[id(p)]}/{k}"] = v.detach().cpu().contiguous().reshape(v.shape)
    return out


def load_optimizer_tensors(named_params: Iterable[tuple[str, torch.nn.Parameter]], opt: torch.optim.Optimizer,
                           tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`optimizer_tensors`.  Moments go to their parameter's device; ``step`` stays on the
    CPU unless the group is capturable or fused, as ``Optimizer.load_state_dict`` does."""
    params = dict(named_params)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    for key, v in tensors.items():
        name, _, k = key.rpartition("/")
        if name not in params:
            raise KeyError(f"optimizer state for unknown parameter {name!r}")
        p = params[name]
        g = group_of[id(p)]
        on_cpu = k == "step" and not (g.get("capturable") or g.get("fused"))
        opt.state[p][k] = v.to("cpu" if on_cpu else p.device)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run (other settings, torn file)."""


# -- random generators ------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """This process's generators as JSON: torch (CPU and CUDA), numpy's global one (timm's Mixup), Python's."""
    np_state = np.random.get_state()
    out = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
           "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]], "python": repr(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: Mapping[str, Any]) -> None:
    import ast

    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)
                                      for s in state["cuda"]])


def _gather(obj: Any) -> list[Any]:
    """``obj`` of every rank (a list of one without DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


# -- checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer | None,
                    state: Mapping[str, Any], named_params: Callable[[], Any] | None = None) -> None:
    """Write modules, optimizer moments, ``state`` and every rank's random generators (rank 0 writes).

    Collective under DDP: every rank must call it.  ``named_params``: the (name, parameter) pairs the
    optimizer's state is keyed by (default: those of ``modules["model"]``)."""
    rngs = _gather(rng_state())
    if _rank() != 0:
        return
    tensors: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"{name}/{k}"] = v.detach().cpu().contiguous()
    if optimizer is not None:
        pairs = named_params() if named_params else modules["model"].named_parameters()
        for k, v in optimizer_tensors(pairs, optimizer).items():
            tensors[f"optim/{k}"] = v
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(dict(state)), "rng": json.dumps(rngs)})


def _read_checkpoint(path: Path, tensors: bool) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(header metadata, tensors or nothing) of a checkpoint; a torn or foreign file is a CheckpointError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # a torn or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e}); delete it to "
                              "start over") from None
    if "state" not in meta:
        raise CheckpointError(f"{path}: no training state in its header; not a walloc-cdl checkpoint")
    return meta, out


def checkpoint_state(path: str | Path) -> dict[str, Any]:
    """The ``state`` a checkpoint holds, read from its header alone (to check settings before loading)."""
    return json.loads(_read_checkpoint(Path(path), tensors=False)[0]["state"])


def load_checkpoint(path: str | Path, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer | None,
                    named_params: Callable[[], Any] | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote (this rank's generators too); returns its ``state``."""
    path = Path(path)
    meta, tensors = _read_checkpoint(path, tensors=True)
    for name, m in modules.items():
        sub = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(f"{name}/")}
        m.load_state_dict(sub)
    if optimizer is not None:
        pairs = named_params() if named_params else modules["model"].named_parameters()
        load_optimizer_tensors(pairs, optimizer, {k[6:]: v for k, v in tensors.items() if k.startswith("optim/")})
    if restore_rng:
        rngs = json.loads(meta.get("rng", "[]"))
        rank = _rank()
        if rank >= len(rngs):
            raise CheckpointError(f"{path}: saved by {len(rngs)} rank(s); resume with the same number of ranks")
        set_rng_state(rngs[rank])
    return json.loads(meta["state"])


# -- one step ---------------------------------------------------------------------------------------
def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on the CPU (float32 there: bf16 convs are wrong on some CPUs)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Stepper:
    """Forward/backward of micro-batches and, every ``accum_steps`` of them, one optimizer update."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, *,
                 amp: bool = True, accum_steps: int = 1, grad_clip: float | None = None,
                 scheduler: Any = None, ema: Any = None, after_step: Callable[[], None] | None = None):
        self.model, self.optimizer, self.device = model, optimizer, device
        self.amp, self.accum, self.clip = amp, max(1, int(accum_steps)), grad_clip
        self.scheduler, self.ema, self.after_step = scheduler, ema, after_step
        self.micro = 0      # micro-batches since the last update
        self.updates = 0    # optimizer updates so far

    def __call__(self, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Run ``loss_fn`` (forward + loss) and backward; step when the accumulation is complete."""
        last = self.micro + 1 == self.accum
        sync = last or not isinstance(self.model, nn.parallel.DistributedDataParallel)
        with (contextlib.nullcontext() if sync else self.model.no_sync()):
            with autocast(self.device, self.amp):
                loss = loss_fn()
            (loss / self.accum).backward()
        self.micro += 1
        if last:
            if self.clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.micro = 0
            self.updates += 1
            if self.after_step is not None:   # before the EMA, so it averages what the hook leaves
                self.after_step()
            if self.scheduler is not None:
                self.scheduler.step_update(num_updates=self.updates)
            if self.ema is not None:
                self.ema.update(_core(self.model), step=self.updates)
        return loss.detach()


def _core(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

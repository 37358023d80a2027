"""Resumable comparisons: a ledger of finished runs and a checkpoint of the run in flight.

A words comparison on 2 CPU cores trains for hours (one full-resolution run alone took an hour); a crash,
a reboot or a lost machine should cost minutes, not the comparison.  ``walloc-cdl compare --resume``
therefore keeps, under ``OUT/state/``:

* ``runs.jsonl``: one line per finished (variant, seed) run, keyed by a signature of everything that
  decides its result (data fingerprint, model, stem, budget, codec weights, device type).  A rerun with
  ``--resume`` reuses a record only when its signature matches, so a changed budget or codec retrains.
* ``ckpt/<variant>-seed<S>-<signature>.safetensors``: the run in flight, every few minutes and after its
  last step: model state, AdamW moments and step counts, the RNG states, and (in the header) the step,
  timing counters and loss sum.  The data order is a function of (seed, epoch), so a resumed run takes
  the same batches and, on the CPU, ends bit-identical to one never interrupted (tested).

Weights go through safetensors, never pickle.  Written atomically (temporary file, then rename).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save_file


# -- optimizer state as named tensors (shared with the codec trainer) -------------------------------
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


# -- signatures -------------------------------------------------------------------------------------
def signature(spec: dict[str, Any]) -> str:
    """Short stable hash of a JSON-able spec (sorted keys)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(*tensors: torch.Tensor, n: int = 64) -> str:
    """Shapes, dtypes and the first and last ``n`` samples of each tensor: cheap, and it changes when a
    user's folder or a benchmark's size changes."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        for part in (t[:n], t[-n:]):
            h.update(part.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# -- the ledger -------------------------------------------------------------------------------------
class RunCheckpoint:
    """The checkpoint of one run in flight; :func:`walloc_cdl.compare.train_and_evaluate` drives it."""

    def __init__(self, path: Path, every_s: float, writer: bool = True):
        self.path, self.every_s, self.writer = path, every_s, writer
        self._last = time.monotonic()

    def load(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Restore model, optimizer and RNG states; returns the saved counters, or None without a checkpoint."""
        if not self.path.exists():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["run_state"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # a torn or foreign file: say so, start this run over
            raise RuntimeError(f"{self.path}: unreadable run checkpoint ({e}); delete it to restart this run") from e
        dev = next(model.parameters()).device
        model.load_state_dict({k[6:]: v.to(dev) for k, v in tensors.items() if k.startswith("model/")})
        load_optimizer_tensors(model.named_parameters(), opt,
                               {k[6:]: v for k, v in tensors.items() if k.startswith("optim/")})
        torch.set_rng_state(tensors["rng/cpu"])
        if "rng/cuda" in tensors and dev.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng/cuda"], dev)
        self._last = time.monotonic()
        return meta

    def maybe_save(self, model: torch.nn.Module, opt: torch.optim.Optimizer, meta: Callable[[], dict[str, Any]],
                   force: bool = False) -> bool:
        """Save if ``every_s`` passed since the last save (or ``force``); only the writer rank writes."""
        if not self.writer or not (force or time.monotonic() - self._last >= self.every_s):
            return False
        dev = next(model.parameters()).device
        tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tensors.update({f"optim/{k}": v for k, v in optimizer_tensors(model.named_parameters(), opt).items()})
        tensors["rng/cpu"] = torch.get_rng_state()
        if dev.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(dev)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"run_state": json.dumps(meta())})
        os.replace(tmp, self.path)
        self._last = time.monotonic()
        return True


class RunLedger:
    """Finished runs and in-flight checkpoints of one comparison, under ``root``.

    ``resume=True`` keeps what is there, and :meth:`finished` returns the stored record of a run whose
    signature matches (so ``--resume`` also adds seeds or variants to a finished comparison).
    ``resume=False`` starts over, unless ``root`` holds an *interrupted* comparison (no ``complete`` mark
    from :meth:`complete`): that is refused rather than thrown away, since it may be hours of training.
    Only rank 0 (``writer``) writes; every rank reads.
    """

    def __init__(self, root: str | Path, resume: bool, checkpoint_every_s: float = 600.0, writer: bool = True):
        self.root, self.every_s, self.writer = Path(root), checkpoint_every_s, writer
        self.file, self.mark = self.root / "runs.jsonl", self.root / "complete"
        ckpts = sorted((self.root / "ckpt").glob("*.safetensors"))
        if not resume and (self.file.exists() or ckpts) and not self.mark.exists():
            n = len(self.file.read_text().splitlines()) if self.file.exists() else 0
            raise FileExistsError(
                f"{self.root} holds an interrupted comparison ({n} finished run(s), {len(ckpts)} in flight): rerun "
                f"with --resume to continue it, or remove {self.root} to start over")
        if not resume and writer:
            self.file.unlink(missing_ok=True)
            self.mark.unlink(missing_ok=True)
            shutil.rmtree(self.root / "ckpt", ignore_errors=True)
        self._done: dict[str, dict[str, Any]] = {}
        if resume and self.file.exists():
            for i, line in enumerate(self.file.read_text().splitlines()):
                try:
                    entry = json.loads(line)
                    self._done[entry["signature"]] = entry["record"]
                except (json.JSONDecodeError, KeyError):  # a line cut by the crash: that run trains again
                    print(f"{self.file}:{i + 1}: unreadable line skipped (its run will train again)")
        self.reused = 0

    def complete(self) -> None:
        """Mark the comparison finished: a later run without --resume may then start over here."""
        if self.writer:
            self.root.mkdir(parents=True, exist_ok=True)
            self.mark.write_text(time.strftime("%Y-%m-%d %H:%M:%S %Z") + "\n")

    def finished(self, sig: str) -> dict[str, Any] | None:
        rec = self._done.get(sig)
        if rec is not None:
            self.reused += 1
        return rec

    def record(self, sig: str, rec: dict[str, Any]) -> None:
        """Append a finished run; its in-flight checkpoint is no longer needed and goes."""
        self._done[sig] = rec
        if self.writer:
            self.root.mkdir(parents=True, exist_ok=True)
            self.mark.unlink(missing_ok=True)  # adding runs (--resume with more seeds) reopens the comparison
            with self.file.open("a") as f:
                f.write(json.dumps({"signature": sig, "record": rec}) + "\n")
            for p in (self.root / "ckpt").glob(f"*-{sig}.safetensors"):
                p.unlink(missing_ok=True)

    def checkpoint(self, name: str, seed: int, sig: str) -> RunCheckpoint:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return RunCheckpoint(self.root / "ckpt" / f"{safe}-seed{seed}-{sig}.safetensors", self.every_s, self.writer)

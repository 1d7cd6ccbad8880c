"""Node embeddings by GraphSAGE (PyTorch Geometric), trained full-batch.

Rules:
- Model: two ``SAGEConv`` layers (mean aggregation; hidden 32, ReLU) mapping node features to
  ``dim`` numbers. ``SAGEConv`` takes no edge features, so edge features (amounts, shares)
  enter through the node features the caller builds from them (weighted degrees, top
  shares); the topology enters through message passing.
- Self-supervised **link prediction**: every epoch scores each (undirected) edge and as many
  uniformly drawn node pairs by the dot product of their embeddings; loss = binary
  cross-entropy (edges 1, random pairs 0). Optionally, with ``labels`` (node -> 0/1, e.g.
  defaults observed *before* the as-of date), a logistic head adds a supervised loss on the
  labelled nodes. Adam, learning rate 0.01, ``epochs`` full-batch steps.
- Deterministic for a seed on CPU (seeded generator for the negative pairs, deterministic
  algorithms); CUDA when available and asked for (``device="cuda"``), CPU by default.
- **CPU threads**: a graph under :data:`SINGLE_THREAD_EDGES` edges trains on one intra-op
  thread (``threads=None``): its per-operation work is too small to split, and on this
  project's shared 2-core machine two threads made epochs 3-24x slower (10k nodes / 50k
  edges: 1.02 s vs 0.043 s an epoch). Larger graphs keep PyTorch's setting; ``threads``
  overrides both. The process-wide settings (threads, deterministic algorithms) are restored
  afterwards; the embeddings do not depend on the thread count.
- Only ``torch`` and ``torch_geometric.nn.SAGEConv`` are used: no compiled extensions
  (``pyg-lib``, ``torch-scatter``) are needed for full-batch training.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from flowbureau.errors import InputError

__all__ = ["SINGLE_THREAD_EDGES", "EmbeddingResult", "train_embeddings"]

SINGLE_THREAD_EDGES = 100_000
"""Below this many edges a CPU run uses one intra-op thread unless ``threads`` says otherwise."""


@contextmanager
def _cpu_threads(torch: ModuleType, threads: int | None, edges: int) -> Iterator[None]:
    """Intra-op threads for the block (module rules); restores threads and determinism."""
    previous = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads or (1 if edges < SINGLE_THREAD_EDGES else previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        torch.use_deterministic_algorithms(deterministic)


@dataclass
class EmbeddingResult:
    """Embeddings (n x dim), the loss and wall time of each epoch, and the device used."""

    embeddings: np.ndarray
    losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    device: str = "cpu"


def train_embeddings(
    edge_index: np.ndarray,
    features: np.ndarray,
    *,
    labels: dict[int, int] | None = None,
    dim: int = 8,
    hidden: int = 32,
    epochs: int = 100,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
) -> EmbeddingResult:
    """Train GraphSAGE on ``edge_index`` (2 x E node positions) and ``features`` (n x F).

    ``labels``: optional node position -> 0/1 for the supervised head; ``threads``: CPU
    intra-op threads (``None``: the module's rule). Returns the embeddings of every node
    (see the module rules).
    """
    import torch
    from torch_geometric.nn import SAGEConv

    x_np = np.asarray(features, dtype=np.float32)
    if x_np.ndim != 2 or not np.isfinite(x_np).all():
        raise InputError("features must be a finite n x F matrix", field="features")
    n = x_np.shape[0]
    edges = np.asarray(edge_index, dtype=np.int64)
    if (
        edges.ndim != 2
        or edges.shape[0] != 2
        or (edges.size and (edges.min() < 0 or edges.max() >= n))
    ):
        raise InputError("edge_index must be 2 x E node positions below n", field="edge_index")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was asked for but no CUDA device is available", field="device")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}", field="threads")
    with _cpu_threads(torch, threads, edges.shape[1]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(device == "cpu")
        generator = torch.Generator(device="cpu").manual_seed(seed)
        dev = torch.device(device)
        both = np.concatenate([edges, edges[::-1]], axis=1) if edges.size else edges
        x = torch.from_numpy(x_np).to(dev)
        message = torch.from_numpy(both).to(dev)
        positive = torch.from_numpy(edges).to(dev)

        class Sage(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.first = SAGEConv(x_np.shape[1], hidden)
                self.second = SAGEConv(hidden, dim)
                self.head = torch.nn.Linear(dim, 1)

            def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
                h = torch.relu(self.first(x, edge_index))
                out: torch.Tensor = self.second(h, edge_index)
                return out

        model = Sage().to(dev)
        optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        labelled = torch.tensor(sorted(labels or {}), dtype=torch.long, device=dev)
        targets = torch.tensor(
            [float((labels or {})[i]) for i in sorted(labels or {})],
            dtype=torch.float32,
            device=dev,
        )
        result = EmbeddingResult(np.zeros((n, dim), dtype=np.float32), device=str(dev))
        for _ in range(epochs):
            start = time.perf_counter()
            model.train()
            optimiser.zero_grad()
            z = model(x, message)
            loss = torch.zeros((), device=dev)
            if positive.shape[1]:
                fake = torch.randint(0, n, tuple(positive.shape), generator=generator).to(dev)
                pos = (z[positive[0]] * z[positive[1]]).sum(dim=1)
                neg = (z[fake[0]] * z[fake[1]]).sum(dim=1)
                loss = bce(pos, torch.ones_like(pos)) + bce(neg, torch.zeros_like(neg))
            if len(labelled):
                logits = model.head(z[labelled]).squeeze(1)
                loss = loss + bce(logits, targets)
            if loss.requires_grad:  # nothing to learn from a graph without edges or labels
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            result.epoch_seconds.append(time.perf_counter() - start)
            result.losses.append(float(loss.detach()))
        model.eval()
        with torch.no_grad():
            result.embeddings = model(x, message).cpu().numpy()
    return result

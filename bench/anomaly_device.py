"""The anomaly benchmark's training on another device, from the features ``bench/anomaly.py``
exported (``--export DIR`` writes ``DIR/anomaly.npz``).

Run: ``python bench/anomaly_device.py --data DIR/anomaly.npz [--device cuda] [--seed N]
[--epochs N] [--direction both|causal]`` with ``src`` on ``PYTHONPATH``. It needs only
torch, numpy, pandas and scikit-learn (no warehouse, no synth), so it runs on a GPU machine
with its own Python. It trains the default configuration on the exported training split,
times ``fit``, scores the held-out split and prints the overall AUPRC (to check the device
learns the same thing), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def frame(data: dict[str, np.ndarray], key: str, names: list[str]) -> pd.DataFrame:
    """A feature frame (the columns the model reads) of one exported split."""
    features = pd.DataFrame(data[f"{key}_x"].astype(np.float64), columns=names)
    ids = pd.DataFrame(
        {
            "tx_id": np.arange(len(features)).astype(str),
            "sequence_id": data[f"{key}_sequence"].astype(str),
            "position": data[f"{key}_position"],
            "amount_minor": data[f"{key}_amount"],
        }
    )
    return pd.concat([ids, features], axis=1)


def main() -> None:
    import torch

    from flowbureau.anomaly.evaluation import detection_metrics
    from flowbureau.anomaly.model import SequenceAnomalyDetector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--direction", default="causal", choices=("both", "causal"))
    args = parser.parse_args()
    data = dict(np.load(args.data))
    names = [str(n) for n in data["names"]]
    train, test = frame(data, "train", names), frame(data, "test", names)
    labels = [v or None for v in data["train_labels"].tolist()]
    model = SequenceAnomalyDetector(
        epochs=args.epochs, seed=args.seed, device=args.device, direction=args.direction
    )
    model.fit(train, labels, feature_names=names)
    scores = model.decision_function(test)
    truth = [v or None for v in data["test_labels"].tolist()]
    auprc = detection_metrics(truth, scores)["overall"]["auprc"]
    device = (
        torch.cuda.get_device_name(0) if model.device_.startswith("cuda") else platform.processor()
    )
    print(
        f"{model.device_} ({device}): fit {model.fit_seconds_:.1f} s for {args.epochs} epochs "
        f"on {len(train):,} entries; held-out overall AUPRC {auprc:.4f}"
    )
    print(
        json.dumps(
            {
                "bench": "anomaly_device",
                "figures": {
                    "device": model.device_,
                    "device_name": device,
                    "torch": torch.__version__,
                    "fit_seconds": round(model.fit_seconds_, 3),
                    "epochs": args.epochs,
                    "direction": args.direction,
                    "train_entries": len(train),
                    "auprc_overall": round(auprc, 6),
                },
                "goals": {},
            }
        )
    )


if __name__ == "__main__":
    main()

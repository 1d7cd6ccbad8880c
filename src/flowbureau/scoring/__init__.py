"""Credit evaluation: features as of a date, external data, scorecard (champion), LightGBM
challenger, calibration, grades, reasons, case-based reasoning, evaluation with score history,
institution trust rate and versioned model artefacts.

``from flowbureau.scoring import ScorecardModel`` is the usual entry point; see
``docs/scoring.md`` for the formulas and the guarantees of each part. Names are imported on
first use, so importing :mod:`flowbureau.scoring.settings` (which :mod:`flowbureau.config`
does at start-up) does not load scikit-learn or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowbureau.scoring.artefacts import (
        Artefact,
        ArtefactManifest,
        list_versions,
        load_model,
        save_model,
    )
    from flowbureau.scoring.calibration import CalibratedModel, PDCalibrator, Rating
    from flowbureau.scoring.cases import CaseLibrary, CaseRisk, SimilarCase
    from flowbureau.scoring.challenger import ChallengerModel
    from flowbureau.scoring.reasons import Reason
    from flowbureau.scoring.scale import Grade, MasterScale, ScoreScaling
    from flowbureau.scoring.scorecard import ScorecardModel
    from flowbureau.scoring.trust import TrustResult, institution_trust, trust_grade

_EXPORTS: dict[str, str] = {
    "Artefact": "artefacts",
    "ArtefactManifest": "artefacts",
    "list_versions": "artefacts",
    "load_model": "artefacts",
    "save_model": "artefacts",
    "CalibratedModel": "calibration",
    "PDCalibrator": "calibration",
    "Rating": "calibration",
    "CaseLibrary": "cases",
    "CaseRisk": "cases",
    "SimilarCase": "cases",
    "ChallengerModel": "challenger",
    "Reason": "reasons",
    "Grade": "scale",
    "MasterScale": "scale",
    "ScoreScaling": "scale",
    "ScorecardModel": "scorecard",
    "TrustResult": "trust",
    "institution_trust": "trust",
    "trust_grade": "trust",
}

__all__ = [
    "Artefact",
    "ArtefactManifest",
    "CalibratedModel",
    "CaseLibrary",
    "CaseRisk",
    "ChallengerModel",
    "Grade",
    "MasterScale",
    "PDCalibrator",
    "Rating",
    "Reason",
    "ScoreScaling",
    "ScorecardModel",
    "SimilarCase",
    "TrustResult",
    "institution_trust",
    "list_versions",
    "load_model",
    "save_model",
    "trust_grade",
]


def __getattr__(name: str) -> Any:
    """Import an exported name from its submodule on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowbureau.scoring' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowbureau.scoring.{module}"), name)
    globals()[name] = value
    return value

"""Synthetic consortium generator: realistic multi-bank statement files with ground truth.

``generate(out, ...)`` writes bank statement files in their native formats (MT940, camt.053,
Chinese online-banking CSV by bank profile) plus account registers, a public business
registry, public records and the ground truth every downstream stage is measured against.
The layout and every column are documented in ``docs/synth.md``; the model's rules are in
the module docstrings of :mod:`flowbureau.synth.world`, :mod:`~flowbureau.synth.health`,
:mod:`~flowbureau.synth.flows` and :mod:`~flowbureau.synth.output`.
"""

from __future__ import annotations

from flowbureau.synth.config import BankFormat, SynthConfig, SynthSummary
from flowbureau.synth.generate import generate, resolve_formats

__all__ = ["BankFormat", "SynthConfig", "SynthSummary", "generate", "resolve_formats"]

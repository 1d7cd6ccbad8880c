"""Statement readers: bank files in, canonical records out.

``read_file`` detects the format (SWIFT MT940/MT942, ISO 20022 camt.052/053/054, BAI2, OFX,
Chinese online-banking CSV/XLSX exports through bank profiles, account registers) and returns
the statements with their entries in :data:`~flowbureau.schema.RAW_ENTRY_SCHEMA`. The rules
every reader follows are in :mod:`flowbureau.formats.base`; detection is explained in
:mod:`flowbureau.formats.detection`; the user guide is ``docs/formats.md``.
"""

from __future__ import annotations

from flowbureau.formats.base import (
    BOOKED,
    INVALID_PREFIX,
    ParsedStatement,
    StatementFacts,
    invalid_status,
    reconcile,
)
from flowbureau.formats.detection import FORMATS, ReadResult, detect, read_file
from flowbureau.formats.profiles import Profile, load_profiles
from flowbureau.formats.register import AccountRecord

__all__ = [
    "BOOKED",
    "FORMATS",
    "INVALID_PREFIX",
    "AccountRecord",
    "ParsedStatement",
    "Profile",
    "ReadResult",
    "StatementFacts",
    "detect",
    "invalid_status",
    "load_profiles",
    "read_file",
    "reconcile",
]

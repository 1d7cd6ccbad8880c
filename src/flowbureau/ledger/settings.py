"""Settings of the consortium ledger and its nodes (``FLOWBUREAU_LEDGER__*``).

Rules:
- The embedded default needs none of them: keys are created under ``data_dir/ledger/keys`` on
  first use, the log lives in the service database, every local bank witnesses in process.
- A passphrase, when set, encrypts every private key written afterwards and is needed to load
  them (keys written without one stay unencrypted; the file permissions protect them).
- This module imports pydantic only: :mod:`flowbureau.config` imports it at start-up.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["LedgerSettings"]


class LedgerSettings(BaseModel):
    """Origin, key protection, witness and node settings of the consortium log."""

    origin: str = Field(
        default="flowbureau.local/consortium",
        description="The log's origin line and the operator key's name (C2SP tlog-checkpoint).",
    )
    passphrase: SecretStr | None = Field(
        default=None, description="Encrypts private key files (PKCS#8) when set."
    )
    quorum: int | None = Field(
        default=None,
        ge=1,
        description="Witness (and approval) quorum at genesis; default a majority of founders.",
    )
    witness_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long the platform waits for a remote witness."
    )
    platform_url: str | None = Field(
        default=None, description="Where a bank node sends bundles (``flowbureau node serve``)."
    )
    witnesses: dict[str, str] = Field(
        default_factory=dict,
        description="Bank id -> base URL of that bank's node, asked to cosign over HTTP by "
        "``flowbureau platform serve``.",
    )
    anchor_interval_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Anchor the audit log's head in the ledger this often while the API runs "
        "(0: only on ``flowbureau audit anchor``).",
    )

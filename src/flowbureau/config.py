"""Settings, read from ``FLOWBUREAU_*`` environment variables (and an optional ``.env``).

Rules:
- Every setting has a default that works on a laptop (``env=dev``): embedded SQLite + DuckDB
  under ``./flowbureau-data``.
- Secrets have development defaults so that ``make demo`` runs with no set-up; with
  ``FLOWBUREAU_ENV=production`` a secret still at its default (or too short) is refused at
  start-up with :class:`~flowbureau.errors.ConfigurationError`.
- Nested groups use ``__``: ``FLOWBUREAU_SERVICE__ACCESS_TOKEN_MINUTES=10``.
- Domain packages own their group model; this module only assembles them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowbureau.anomaly.settings import AnomalySettings
from flowbureau.cleaning.settings import IngestSettings
from flowbureau.errors import ConfigurationError
from flowbureau.identity.settings import IdentitySettings
from flowbureau.ledger.settings import LedgerSettings
from flowbureau.scoring.settings import ScoringSettings
from flowbureau.service.settings import ServiceSettings
from flowbureau.storage.settings import WarehouseSettings

DEV_SECRET_PREFIX = "dev-insecure-"
"""Every development default secret starts with this, so production can recognise them."""

MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """All flowbureau settings. Obtain them with :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="FLOWBUREAU_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["dev", "test", "production"] = "dev"
    data_dir: Path = Field(
        default=Path("./flowbureau-data"),
        description="Root of everything flowbureau stores: warehouse, service DB, keys, models.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the service database; default SQLite in data_dir.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for cache, OTPs and rate limits; default in-process.",
    )
    timezone: str = Field(
        default="Asia/Shanghai",
        description="Time zone of statement times that carry no UTC offset.",
    )
    pseudonym_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_PREFIX + "pseudonym-key-change-me-0000000"),
        description="HMAC key that turns account numbers into stable pseudonyms.",
    )
    vault_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_PREFIX + "vault-key-change-me-000000000000"),
        description="Key material for the encrypted vault of clear account numbers and PII.",
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_PREFIX + "secret-key-change-me-00000000000"),
        description="Signs session tokens (JWT) and CSRF tokens.",
    )
    sms_backend: str = Field(
        default="console",
        description=(
            "Where SMS codes go: console (print), file:PATH (JSON lines) or an http(s) URL."
        ),
    )
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    anomaly: AnomalySettings = Field(default_factory=AnomalySettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        weak = [
            name
            for name, value in self._secrets().items()
            if value.startswith(DEV_SECRET_PREFIX) or len(value) < MIN_SECRET_LENGTH
        ]
        if weak:
            names = ", ".join(f"FLOWBUREAU_{n.upper()}" for n in sorted(weak))
            raise ConfigurationError(
                f"refusing to start in production with default or short secrets: {names} "
                f"(set each to a random value of at least {MIN_SECRET_LENGTH} characters)"
            )
        return self

    def _secrets(self) -> dict[str, str]:
        return {
            "pseudonym_key": self.pseudonym_key.get_secret_value(),
            "vault_key": self.vault_key.get_secret_value(),
            "secret_key": self.secret_key.get_secret_value(),
        }

    @property
    def warehouse_dir(self) -> Path:
        """Parquet files and the DuckDB catalog."""
        return self.data_dir / "warehouse"

    @property
    def resolved_database_url(self) -> str:
        """The service database URL, defaulting to SQLite inside ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'flowbureau.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once from the environment)."""
    return Settings()

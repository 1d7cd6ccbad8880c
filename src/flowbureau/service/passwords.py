"""Password hashing with argon2id (argon2-cffi) and the password policy.

Rules:
- Hashes are argon2id with the cost parameters of ``settings.service`` (default: RFC 9106's
  second recommended profile, t=3, m=64 MiB, p=4); a stored hash made with weaker parameters
  is reported by :meth:`Passwords.needs_rehash` so sign-in can upgrade it.
- A password is 10 to 128 characters (NIST SP 800-63B: length, no composition rules).
- Checking a phone that has no account still spends one hash verification, so response times
  do not tell which phones are registered.
"""

from __future__ import annotations

from functools import cached_property

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from flowbureau.errors import InputError
from flowbureau.service.settings import ServiceSettings

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "Passwords", "check_password_policy"]

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128


def check_password_policy(password: str, *, field: str = "password") -> None:
    """Raise :class:`InputError` naming ``field`` unless ``password`` has an allowed length."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InputError(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            field=field,
        )


class Passwords:
    """Hashes and verifies passwords with argon2id at the configured cost."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )

    @cached_property
    def _dummy_hash(self) -> str:
        return self._hasher.hash("flowbureau-no-such-account")

    def hash(self, password: str) -> str:
        """Return the argon2id hash (PHC string) of ``password``."""
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored_hash``; ``None`` spends the same time, False."""
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and bool(
                stored_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than the current ones."""
        return self._hasher.check_needs_rehash(stored_hash)

"""Core types: money, codes, settings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from flowbureau.config import Settings
from flowbureau.errors import ConfigurationError, InputError
from flowbureau.schema import (
    MoneyError,
    TxType,
    currency_exponent,
    format_minor,
    is_valid_credit_code,
    parse_amount,
    to_minor,
    validate_credit_code,
)


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("1,234.56", {}, Decimal("1234.56")),
        ("-12.5", {}, Decimal("-12.5")),
        ("12.50-", {}, Decimal("-12.50")),
        ("(7.00)", {}, Decimal("-7.00")),
        ("１２３．４５", {}, Decimal("123.45")),
        ("1234,56", {"decimal_comma": True}, Decimal("1234.56")),
        ("1.234,56", {"decimal_comma": True}, Decimal("1234.56")),
        ("100,", {"decimal_comma": True}, Decimal("100.0")),
    ],
)
def test_parse_amount(text: str, kwargs: dict[str, bool], expected: Decimal) -> None:
    assert parse_amount(text, **kwargs) == expected


@pytest.mark.parametrize("text", ["abc", "", "1.2.3", "NaN", "Infinity"])
def test_parse_amount_rejects(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(text)


def test_to_minor_uses_currency_exponent() -> None:
    assert currency_exponent("cny") == 2
    assert to_minor(Decimal("123.45"), "CNY") == 12345
    assert to_minor(Decimal("100"), "JPY") == 100
    assert to_minor(Decimal("1.234"), "KWD") == 1234
    assert format_minor(-12345, "CNY") == "-123.45"


def test_to_minor_refuses_to_round() -> None:
    with pytest.raises(MoneyError, match="more than 2 decimals"):
        to_minor(Decimal("1.005"), "EUR")
    with pytest.raises(ValueError, match="unknown ISO 4217"):
        to_minor(Decimal("1"), "XXQ")


def test_credit_code_check_digit() -> None:
    assert is_valid_credit_code("91110000600037341L")
    assert not is_valid_credit_code("91110000600037341A")
    assert validate_credit_code("91110000600037341L") == "91110000600037341L"
    with pytest.raises(ValueError, match="unified social credit code"):
        validate_credit_code("123")


def test_tx_types_are_the_documented_set() -> None:
    assert len(TxType) == 14
    assert TxType("payroll") is TxType.PAYROLL


def test_input_error_names_location() -> None:
    err = InputError("not a date", file="a.csv", line=7, field="交易日期")
    assert str(err) == "a.csv, line 7, field '交易日期': not a date"
    assert (err.file, err.line, err.field) == ("a.csv", 7, "交易日期")


def test_production_refuses_default_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUREAU_ENV", "production")
    with pytest.raises(ConfigurationError, match="FLOWBUREAU_PSEUDONYM_KEY"):
        Settings()
    for name in ("PSEUDONYM_KEY", "VAULT_KEY", "SECRET_KEY"):
        monkeypatch.setenv(f"FLOWBUREAU_{name}", "x" * 40 + name)
    assert Settings().env == "production"
    monkeypatch.setenv("FLOWBUREAU_SECRET_KEY", "short")
    with pytest.raises(ConfigurationError, match="FLOWBUREAU_SECRET_KEY"):
        Settings()


def test_dev_defaults_work() -> None:
    settings = Settings()
    assert settings.env == "test"
    assert settings.resolved_database_url.startswith("sqlite:///")

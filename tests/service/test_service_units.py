"""Units of the service: phone and industry codes, rate limits (in-process and Redis), SMS
backends."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowbureau.errors import ConfigurationError, InputError, RateLimitedError
from flowbureau.service.identifiers import normalize_industry_code, normalize_phone
from flowbureau.service.ratelimit import InProcessRateLimiter, Rate, RateLimiter, RedisRateLimiter
from flowbureau.service.settings import ServiceSettings
from flowbureau.service.sms import (
    ConsoleSender,
    DeliveryError,
    FileSender,
    HttpGatewaySender,
    make_sms_sender,
)

REDIS_URL = os.environ.get("FLOWBUREAU_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("13800138000", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("0086 13800138000", "+8613800138000"),
        ("+852 9123 4567", "+85291234567"),
    ],
)
def test_phones_are_normalised_to_e164(text: str, e164: str) -> None:
    assert normalize_phone(text) == e164


@pytest.mark.parametrize("text", ["12800138000", "1380013800", "+86 10 6512 3456", "+0123", "abc"])
def test_bad_phones_name_the_field(text: str) -> None:
    with pytest.raises(InputError) as caught:
        normalize_phone(text, field="contact_phone")
    assert caught.value.field == "contact_phone"


@pytest.mark.parametrize(
    ("text", "code"),
    [("C3511", "C3511"), ("3511", "C3511"), ("c35", "C35"), ("F", "F"), ("97", "T97")],
)
def test_industry_codes_are_normalised(text: str, code: str) -> None:
    assert normalize_industry_code(text) == code


@pytest.mark.parametrize("text", ["A3511", "98", "Z", "C351111", "C3", ""])
def test_bad_industry_codes_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="industry_code"):
        normalize_industry_code(text)


class ManualMs:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def test_gcra_allows_a_burst_then_a_steady_rate() -> None:
    clock = ManualMs()
    limiter = InProcessRateLimiter(clock_ms=clock)
    rate = Rate(3, 60)  # 3 per minute: one every 20 s after the burst
    for _ in range(3):
        limiter.hit("k", rate, what="things")
    with pytest.raises(RateLimitedError) as caught:
        limiter.hit("k", rate, what="things")
    assert caught.value.retry_after == 20
    assert "too many things: at most 3 per 60 s" in str(caught.value)
    clock.now += 19_999
    with pytest.raises(RateLimitedError):
        limiter.hit("k", rate, what="things")
    clock.now += 1
    limiter.hit("k", rate, what="things")  # one more after 20 s
    limiter.hit("other", rate, what="things")  # keys are independent
    limiter.reset("k")
    for _ in range(3):
        limiter.hit("k", rate, what="things")


def _redis_or_skip() -> RedisRateLimiter:
    try:
        limiter = RedisRateLimiter(REDIS_URL, prefix=f"flowbureau-test:{uuid.uuid4().hex}:")
        limiter.ping()
    except ConfigurationError as exc:
        pytest.skip(f"no Redis server answers at {REDIS_URL}: {exc}")
    return limiter


@pytest.fixture(params=["in-process", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    if request.param == "in-process":
        yield InProcessRateLimiter()
        return
    redis_limiter = _redis_or_skip()
    yield redis_limiter
    for key in ("a", "b"):
        redis_limiter.reset(key)
    redis_limiter.close()


def test_both_backends_enforce_the_same_limit(limiter: RateLimiter) -> None:
    rate = Rate(5, 3600)
    for _ in range(5):
        limiter.hit("a", rate, what="codes")
    with pytest.raises(RateLimitedError) as caught:
        limiter.hit("a", rate, what="codes")
    assert 700 <= caught.value.retry_after <= 720  # one code per 12 minutes after the burst
    limiter.hit("b", rate, what="codes")
    limiter.reset("a")
    limiter.hit("a", rate, what="codes")


def test_redis_unreachable_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Redis"):
        RedisRateLimiter("redis://127.0.0.1:1/0").ping()


def test_file_backend_appends_json_lines(tmp_path: Path) -> None:
    sender = make_sms_sender(f"file:{tmp_path / 'out' / 'sms.jsonl'}", ServiceSettings())
    assert isinstance(sender, FileSender)
    sender.send("+8613800138000", "验证码 123456")
    sender.send("+8613900139000", "second")
    lines = (tmp_path / "out" / "sms.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(line)["phone"] for line in lines] == ["+8613800138000", "+8613900139000"]
    assert json.loads(lines[0])["text"] == "验证码 123456"


def test_console_backend_prints(capsys: pytest.CaptureFixture[str]) -> None:
    sender = make_sms_sender("console", ServiceSettings())
    assert isinstance(sender, ConsoleSender)
    sender.send("+8613800138000", "hello")
    assert capsys.readouterr().out == "SMS to +8613800138000: hello\n"


def test_http_gateway_posts_with_credentials() -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202 if len(seen) == 1 else 503)

    sender = HttpGatewaySender(
        "https://sms.example/send",
        username="flowbureau",
        password="s3cret",
        transport=httpx.MockTransport(gateway),
    )
    sender.send("+8613800138000", "验证码 654321")
    assert json.loads(seen[0].content) == {"phone": "+8613800138000", "text": "验证码 654321"}
    assert seen[0].headers["authorization"] == "Basic Zmxvd2J1cmVhdTpzM2NyZXQ="
    with pytest.raises(DeliveryError, match="HTTP 503"):
        sender.send("+8613800138000", "again")


def test_http_gateway_settings_and_unknown_backends() -> None:
    settings = ServiceSettings(sms_http_username="u", sms_http_password="p")
    assert isinstance(make_sms_sender("https://sms.example/send", settings), HttpGatewaySender)
    for bad in ("carrier-pigeon", "file:"):
        with pytest.raises(ConfigurationError):
            make_sms_sender(bad, settings)

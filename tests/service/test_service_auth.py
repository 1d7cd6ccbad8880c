"""Sign-in: SMS codes (life, tries, resend interval, per-phone and per-IP limits), passwords,
refresh-token rotation with reuse detection, sign-out."""

from __future__ import annotations

from collections.abc import Callable

from service_helpers import PASSWORD, Api, bearer

PHONE = "13800138000"
E164 = "+8613800138000"


def _register_with(api: Api, code: str, phone: str = PHONE) -> int:
    response = api.client.post(
        "/v1/auth/register", json={"phone": phone, "code": code, "password": PASSWORD}
    )
    return response.status_code


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_code_is_six_digits_and_stored_hashed(api: Api) -> None:
    code = api.request_code(PHONE)
    assert len(code) == 6
    assert code.isdigit()
    db_file = api.context.settings.data_dir / "flowbureau.db"
    assert code.encode() not in db_file.read_bytes()
    assert _register_with(api, code) == 201


def test_code_dies_after_five_minutes(api: Api) -> None:
    code = api.request_code(PHONE)
    api.clock.advance(minutes=5, seconds=1)
    assert _register_with(api, code) == 401


def test_code_works_until_its_last_second(api: Api) -> None:
    code = api.request_code(PHONE)
    api.clock.advance(minutes=4, seconds=59)
    assert _register_with(api, code) == 201


def test_fifth_wrong_try_kills_the_code(api: Api) -> None:
    code = api.request_code(PHONE)
    details = []
    for _ in range(5):
        response = api.client.post(
            "/v1/auth/register", json={"phone": PHONE, "code": _wrong(code), "password": PASSWORD}
        )
        assert response.status_code == 401
        details.append(response.json()["detail"])
    assert details[0] == "wrong SMS code (4 tries left)"
    assert "no tries left" in details[-1]
    assert _register_with(api, code) == 401  # the right code no longer works


def test_four_wrong_tries_leave_the_right_code_usable(api: Api) -> None:
    code = api.request_code(PHONE)
    for _ in range(4):
        assert _register_with(api, _wrong(code)) == 401
    assert _register_with(api, code) == 201


def test_a_code_is_used_once(api: Api) -> None:
    code = api.request_code(PHONE)
    assert _register_with(api, code) == 201
    assert _register_with(api, code) == 401


def test_one_code_per_sixty_seconds(api: Api) -> None:
    api.request_code(PHONE)
    api.clock.advance(seconds=30)
    again = api.client.post("/v1/auth/sms-code", json={"phone": PHONE, "purpose": "register"})
    assert again.status_code == 429
    assert again.headers["Retry-After"] == "30"
    assert again.json()["type"] == "urn:flowbureau:problem:rate-limited"
    api.clock.advance(seconds=30)
    api.request_code(PHONE)
    first, second = api.sms_codes(E164)
    if first != second:  # a new code replaces the previous one
        assert _register_with(api, first) == 401
    assert _register_with(api, second) == 201


def test_codes_per_phone_are_limited(make_api: Callable[..., Api]) -> None:
    api = make_api(otp_per_phone_per_hour=3)
    statuses = []
    for _ in range(4):
        response = api.client.post("/v1/auth/sms-code", json={"phone": PHONE, "purpose": "login"})
        statuses.append(response.status_code)
        api.clock.advance(seconds=61)
    assert statuses == [202, 202, 202, 429]
    other = api.client.post("/v1/auth/sms-code", json={"phone": "13900139000", "purpose": "login"})
    assert other.status_code == 202  # another phone has its own budget


def test_codes_per_client_ip_are_limited(make_api: Callable[..., Api]) -> None:
    api = make_api(otp_per_ip_per_hour=4)
    statuses = [
        api.client.post(
            "/v1/auth/sms-code", json={"phone": f"1390013900{i}", "purpose": "login"}
        ).status_code
        for i in range(5)
    ]
    assert statuses == [202, 202, 202, 202, 429]


def test_register_request_for_a_registered_phone_sends_no_code(api: Api) -> None:
    api.register(PHONE)
    before = api.sms_codes(E164)
    response = api.client.post("/v1/auth/sms-code", json={"phone": PHONE, "purpose": "register"})
    assert response.status_code == 202  # the same answer as for a new phone
    assert api.sms_codes(E164) == before
    assert "已注册" in api.sms_path.read_text("utf-8").splitlines()[-1]


def test_login_with_password_and_with_code(api: Api) -> None:
    api.register(PHONE)
    assert api.client.get("/v1/me", headers=api.login(PHONE)).json()["role"] == "enterprise"
    wrong = api.client.post("/v1/auth/login", json={"phone": PHONE, "password": "x" * 12})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    unknown = api.client.post("/v1/auth/login", json={"phone": "13900139000", "password": "x" * 12})
    assert unknown.json()["detail"] == wrong.json()["detail"]  # no account enumeration
    code = api.request_code(PHONE, purpose="login")
    by_code = api.client.post("/v1/auth/login", json={"phone": PHONE, "code": code})
    assert by_code.status_code == 200
    both = api.client.post(
        "/v1/auth/login", json={"phone": PHONE, "code": code, "password": PASSWORD}
    )
    assert both.status_code == 422


def test_login_attempts_are_limited_per_phone(make_api: Callable[..., Api]) -> None:
    api = make_api(login_per_phone_per_15min=3)
    api.register(PHONE)
    statuses = [
        api.client.post(
            "/v1/auth/login", json={"phone": PHONE, "password": "wrong-password"}
        ).status_code
        for _ in range(3)
    ]
    blocked = api.client.post("/v1/auth/login", json={"phone": PHONE, "password": PASSWORD})
    # registering counted once, so the third wrong password is already refused
    assert statuses == [401, 401, 429]
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0


def test_a_successful_sign_in_clears_the_phones_count(make_api: Callable[..., Api]) -> None:
    api = make_api(login_per_phone_per_15min=3)
    api.register(PHONE)  # counts once
    wrong = {"phone": PHONE, "password": "wrong-password"}
    assert api.client.post("/v1/auth/login", json=wrong).status_code == 401
    api.login(PHONE)
    statuses = [api.client.post("/v1/auth/login", json=wrong).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_refresh_rotates_and_reuse_revokes_the_session(api: Api) -> None:
    first = api.register(PHONE)
    second = api.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert api.client.get("/v1/me", headers=bearer(pair["access_token"])).status_code == 200
    # the old refresh token is refused, and presenting it revokes the whole session
    replay = api.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert "revoked" in replay.json()["detail"]
    latest = api.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert latest.status_code == 401
    assert api.client.get("/v1/me", headers=bearer(pair["access_token"])).status_code == 401
    # other sessions of the same user are untouched
    assert api.client.get("/v1/me", headers=api.login(PHONE)).status_code == 200


def test_access_token_expires_and_logout_ends_the_session(api: Api) -> None:
    tokens = api.register(PHONE)
    headers = bearer(tokens["access_token"])
    api.clock.advance(minutes=13)  # register() already moved the clock 61 s
    assert api.client.get("/v1/me", headers=headers).status_code == 200
    api.clock.advance(minutes=2)
    expired = api.client.get("/v1/me", headers=headers)
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    fresh = api.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    pair = fresh.json()
    out = api.client.post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert out.status_code == 204
    assert api.client.get("/v1/me", headers=bearer(pair["access_token"])).status_code == 401
    again = api.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 401


def test_tampered_or_foreign_tokens_are_refused(api: Api) -> None:
    access = api.register(PHONE)["access_token"]
    header, payload, signature = access.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    for token in (forged, "not-a-jwt", "fbk_0000000000000000_" + "a" * 43):
        assert api.client.get("/v1/me", headers=bearer(token)).status_code == 401
    assert api.client.get("/v1/me").status_code == 401


def test_staff_cannot_register_themselves(api: Api) -> None:
    code = api.request_code(PHONE)
    response = api.client.post(
        "/v1/auth/register",
        json={"phone": PHONE, "code": code, "password": PASSWORD, "role": "operator"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "role"

"""``/v1/auth``: SMS codes, registration, sign-in, token refresh, sign-out; ``/v1/me``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from flowbureau.service import accounts, otp, tokens
from flowbureau.service.deps import (
    ClientIpDep,
    ContextDep,
    CurrentPrincipal,
    IdempotencyDep,
    NowDep,
    RequestIdDep,
    SessionDep,
)
from flowbureau.service.schemas import (
    LoginRequest,
    PrincipalPublic,
    RefreshRequest,
    RegisterCreate,
    SmsCodeRequest,
    SmsCodeSent,
    TokenPublic,
    problem_responses,
)

router = APIRouter(tags=["auth"])


def _token_public(pair: tokens.TokenPair) -> TokenPublic:
    return TokenPublic(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
    )


@router.post(
    "/v1/auth/sms-code",
    status_code=202,
    response_model=SmsCodeSent,
    responses=problem_responses(422, 429, 502),
)
def request_sms_code(
    *,
    body: SmsCodeRequest,
    session: SessionDep,
    context: ContextDep,
    client_ip: ClientIpDep,
    now: NowDep,
    idempotency: IdempotencyDep,
) -> Response:
    """Send a 6-digit code to the phone (5-minute life, 5 tries, one per 60 s)."""

    def send() -> SmsCodeSent:
        sent = otp.request_code(
            session,
            phone=body.phone,
            purpose=body.purpose,
            client_ip=client_ip,
            vault=context.vault,
            sender=context.sms,
            limiter=context.limiter,
            settings=context.settings.service,
            now=now,
        )
        return SmsCodeSent(expires_in=sent.expires_in, resend_after=sent.resend_after)

    return idempotency.respond(scope="anonymous", status_code=202, request_body=body, produce=send)


@router.post(
    "/v1/auth/register",
    status_code=201,
    responses=problem_responses(401, 409, 422, 429),
)
def register(
    *,
    body: RegisterCreate,
    session: SessionDep,
    context: ContextDep,
    client_ip: ClientIpDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> TokenPublic:
    """Register an enterprise user with the SMS code; returns its first tokens."""
    user = accounts.register_enterprise_user(
        session,
        phone=body.phone,
        code=body.code,
        password=body.password,
        client_ip=client_ip,
        vault=context.vault,
        passwords=context.passwords,
        limiter=context.limiter,
        settings=context.settings.service,
        request_id=request_id,
        now=now,
        display_name=body.display_name,
        enterprise_name=body.enterprise_name,
    )
    return _token_public(tokens.start_session(session, user=user, issuer=context.tokens, now=now))


@router.post("/v1/auth/login", responses=problem_responses(401, 422, 429))
def login(
    *,
    body: LoginRequest,
    session: SessionDep,
    context: ContextDep,
    client_ip: ClientIpDep,
    now: NowDep,
) -> TokenPublic:
    """Sign in with the phone and either the password or an SMS code (purpose login)."""
    user = accounts.authenticate(
        session,
        phone=body.phone,
        password=body.password,
        code=body.code,
        client_ip=client_ip,
        vault=context.vault,
        passwords=context.passwords,
        limiter=context.limiter,
        settings=context.settings.service,
        now=now,
    )
    return _token_public(tokens.start_session(session, user=user, issuer=context.tokens, now=now))


@router.post("/v1/auth/refresh", responses=problem_responses(401, 422))
def refresh(
    *, body: RefreshRequest, session: SessionDep, context: ContextDep, now: NowDep
) -> TokenPublic:
    """Exchange a refresh token (single use) for new tokens; reuse revokes the session."""
    pair = tokens.refresh(session, refresh_token=body.refresh_token, issuer=context.tokens, now=now)
    return _token_public(pair)


@router.post("/v1/auth/logout", status_code=204, responses=problem_responses(422))
def logout(body: RefreshRequest, session: SessionDep, now: NowDep) -> Response:
    """End the session the refresh token belongs to; its access tokens stop working too."""
    tokens.end_session(session, refresh_token=body.refresh_token, now=now)
    return Response(status_code=204)


@router.get("/v1/me", responses=problem_responses(401, 429))
def me(principal: CurrentPrincipal) -> PrincipalPublic:
    """Who the caller is: role, institution or enterprise, API key scopes."""
    return PrincipalPublic(
        kind=principal.kind,
        id=principal.key_id if principal.kind == "api_key" and principal.key_id else principal.id,
        role=principal.role,
        institution_id=principal.institution_id,
        enterprise_id=principal.enterprise_id,
        scopes=sorted(principal.scopes),
    )

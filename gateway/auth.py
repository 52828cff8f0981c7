"""Bearer JWTs from the product's identity provider: verified here, mapped to a principal."""

import time
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import HTTPException

from gateway.settings import Settings


class AuthError(Exception):
    """A token that must not be trusted; the message says why without echoing the token."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool
    email: str | None
    name: str | None
    expires_at: int


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.jwt_verification_key
        self._algorithm = settings.jwt_algorithm
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._admin_role = settings.jwt_admin_role
        self._roles_path = settings.jwt_roles_claim.split(".")

    def verify(self, token: str) -> Principal:
        """The principal a token names; AuthError for any token that is not exactly right."""
        try:
            # Only the configured algorithm is accepted: "none" and HS/RS confusion fail here.
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("the token is not for this audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("the token is from another issuer") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise AuthError(f"the token must be signed with {self._algorithm}") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the token has no `{exc.claim}` claim") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("the token is malformed or its signature does not verify") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise AuthError("the token's `sub` must be a non-empty string")
        return Principal(
            user_id=subject,
            is_admin=self._admin_role in self._roles(claims),
            email=_optional_str(claims.get("email")),
            name=_optional_str(claims.get("name")),
            expires_at=int(claims["exp"]),
        )

    def _roles(self, claims: dict[str, Any]) -> list[str]:
        value: Any = claims
        for part in self._roles_path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [role for role in value if isinstance(role, str)]
        return []


def authenticate(
    verifier: TokenVerifier, authorization: str | None
) -> tuple[Principal | None, str | None]:
    """The caller an `Authorization` header names (None without one), or why it is refused."""
    try:
        token = bearer_token(authorization)
        return (verifier.verify(token) if token is not None else None), None
    except AuthError as exc:
        return None, str(exc)


def require_principal(verifier: TokenVerifier, authorization: str | None) -> Principal:
    """The caller of a REST route that needs one; 401 with the reason otherwise."""
    principal, reason = authenticate(verifier, authorization)
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail=f"Authentication required: {reason or 'no bearer token was sent'}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None when there is no header."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be `Bearer <token>`")
    return token.strip()


def mint_token(
    settings: Settings,
    *,
    user_id: str,
    admin: bool = False,
    ttl_seconds: int = 3600,
    email: str | None = None,
) -> str:
    """A development token signed with JWT_SECRET, shaped as the product's provider would."""
    if settings.jwt_public_key:
        raise AuthError(
            "tokens can be minted only with JWT_SECRET; RS256 tokens come from the provider"
        )
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "iat": now,
        "exp": now + ttl_seconds,
        "aud": settings.jwt_audience,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if email:
        claims["email"] = email
    if admin:
        _set_claim(claims, settings.jwt_roles_claim.split("."), [settings.jwt_admin_role])
    return jwt.encode(claims, settings.jwt_signing_secret, algorithm="HS256")


def _set_claim(claims: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        claims = claims.setdefault(part, {})
    claims[path[-1]] = value


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

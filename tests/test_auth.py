"""Bearer tokens: only exactly-right tokens name a caller; the admin role is read from a claim."""

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth import AuthError, TokenVerifier, bearer_token, mint_token
from gateway.settings import Settings
from tests.conftest import error_codes, graphql

VIEWER = "query { viewer { userId customer { userId email } } }"
ADMIN = "query { admin { customers(first: 10) { totalCount } } }"


def hs256(settings: Settings, **claims) -> str:
    base = {"sub": "alice", "aud": settings.jwt_audience, "exp": int(time.time()) + 60}
    return jwt.encode(base | claims, settings.jwt_signing_secret, algorithm="HS256")


def unsigned(claims: dict) -> str:
    """A token with `alg: none`, as an attacker would forge it."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_a_minted_token_verifies_to_its_user(settings: Settings):
    principal = TokenVerifier(settings).verify(
        mint_token(settings, user_id="alice", email="a@x.io")
    )
    assert (principal.user_id, principal.is_admin, principal.email) == ("alice", False, "a@x.io")


@pytest.mark.parametrize(
    "make_token, reason",
    [
        (lambda s: hs256(s, exp=int(time.time()) - 10), "expired"),
        (
            lambda s: jwt.encode(
                {"sub": "alice", "aud": s.jwt_audience, "exp": int(time.time()) + 60},
                "another-secret-of-enough-length-xxxxxxx",
                algorithm="HS256",
            ),
            "signature",
        ),
        (
            lambda s: unsigned(
                {"sub": "alice", "aud": s.jwt_audience, "exp": int(time.time()) + 60}
            ),
            "HS256",
        ),
        (lambda s: hs256(s, aud="another-service"), "audience"),
        (
            lambda s: jwt.encode(
                {"sub": "alice", "aud": s.jwt_audience}, s.jwt_signing_secret, algorithm="HS256"
            ),
            "`exp`",
        ),
        (
            lambda s: jwt.encode(
                {"aud": s.jwt_audience, "exp": int(time.time()) + 60},
                s.jwt_signing_secret,
                algorithm="HS256",
            ),
            "`sub`",
        ),
        (lambda s: hs256(s, sub=""), "sub"),
        (lambda s: "not-a-jwt", "malformed"),
    ],
    ids=[
        "expired",
        "wrong-signature",
        "alg-none",
        "wrong-audience",
        "no-exp",
        "no-sub",
        "empty-sub",
        "garbage",
    ],
)
def test_bad_tokens_are_refused(settings: Settings, make_token, reason: str):
    with pytest.raises(AuthError, match=reason):
        TokenVerifier(settings).verify(make_token(settings))


def test_a_wrong_issuer_is_refused_when_an_issuer_is_configured():
    settings = Settings(billing_env="test", jwt_issuer="https://id.example.com")
    verifier = TokenVerifier(settings)
    assert verifier.verify(mint_token(settings, user_id="alice")).user_id == "alice"
    with pytest.raises(AuthError, match="issuer"):
        verifier.verify(hs256(settings, iss="https://evil.example.com"))


def test_rs256_tokens_verify_with_the_public_key(rsa_keys):
    private, public = rsa_keys
    settings = Settings(billing_env="test", jwt_public_key=public)
    token = jwt.encode(
        {"sub": "bob", "aud": settings.jwt_audience, "exp": int(time.time()) + 60},
        private,
        algorithm="RS256",
    )
    assert TokenVerifier(settings).verify(token).user_id == "bob"


def test_an_hs256_token_is_refused_when_rs256_is_configured(rsa_keys):
    _, public = rsa_keys
    settings = Settings(billing_env="test", jwt_public_key=public)
    # The classic confusion attack: sign HS256 with the public key as the HMAC secret.
    forged = jwt.api_jws.PyJWS()._algorithms["HS256"]
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": "mallory", "aud": settings.jwt_audience, "exp": int(time.time()) + 60}
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
        for part in (header, payload)
    ]
    signing_input = ".".join(segments).encode()
    signature = forged.sign(signing_input, public.encode())
    token = ".".join(segments + [base64.urlsafe_b64encode(signature).decode().rstrip("=")])
    with pytest.raises(AuthError, match="RS256"):
        TokenVerifier(settings).verify(token)


def test_the_admin_role_is_read_from_a_nested_claim():
    settings = Settings(
        billing_env="test", jwt_roles_claim="realm_access.roles", jwt_admin_role="ops"
    )
    admin = mint_token(settings, user_id="root", admin=True)
    assert jwt.decode(admin, options={"verify_signature": False})["realm_access"] == {
        "roles": ["ops"]
    }
    assert TokenVerifier(settings).verify(admin).is_admin
    assert not TokenVerifier(settings).verify(mint_token(settings, user_id="eve")).is_admin


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "token abc"])
def test_a_malformed_authorization_header_is_refused(header: str):
    with pytest.raises(AuthError):
        bearer_token(header)


async def test_viewer_without_a_token_is_unauthenticated(client):
    result = await graphql(client, VIEWER)
    assert result["data"] is None
    assert error_codes(result) == ["UNAUTHENTICATED"]


async def test_viewer_with_an_expired_token_is_unauthenticated(client, settings):
    result = await graphql(client, VIEWER, token=hs256(settings, exp=int(time.time()) - 5))
    assert error_codes(result) == ["UNAUTHENTICATED"]
    assert "expired" in result["errors"][0]["message"]


async def test_viewer_with_an_unsigned_token_is_unauthenticated(client, settings):
    token = unsigned({"sub": "alice", "aud": settings.jwt_audience, "exp": int(time.time()) + 60})
    assert error_codes(await graphql(client, VIEWER, token=token)) == ["UNAUTHENTICATED"]


async def test_a_customer_asking_for_admin_is_forbidden(client, token_for):
    result = await graphql(client, ADMIN, token=token_for("alice"))
    assert result["data"] is None
    assert error_codes(result) == ["FORBIDDEN"]


async def test_admin_without_a_token_is_unauthenticated(client):
    assert error_codes(await graphql(client, ADMIN)) == ["UNAUTHENTICATED"]


async def test_an_admin_may_ask_for_admin(client, token_for):
    result = await graphql(client, ADMIN, token=token_for("root", admin=True))
    assert "errors" not in result
    assert result["data"]["admin"]["customers"]["totalCount"] == 0

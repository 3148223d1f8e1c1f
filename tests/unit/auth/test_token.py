from datetime import UTC, datetime, timedelta

import jwt
import pytest

from airflow_provider_m2m.auth import AccessToken, Freshness, TokenEndpointError, parse_token_response

REQUESTED_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _jwt_with_exp(exp: datetime) -> str:
    return jwt.encode({"sub": "svc", "exp": int(exp.timestamp())}, "k" * 32, algorithm="HS256")


def test_parse_without_expires_in_uses_default_lifetime():
    token = parse_token_response(
        {"access_token": "opaque", "token_type": "bearer"},
        requested_at=REQUESTED_AT,
        default_lifetime=timedelta(minutes=20),
    )
    assert token.expires_at == REQUESTED_AT + timedelta(minutes=20)
    assert token.issued_at == REQUESTED_AT


def test_parse_expires_in_as_string():
    token = parse_token_response(
        {"access_token": "opaque", "token_type": "Bearer", "expires_in": "3600"},
        requested_at=REQUESTED_AT,
    )
    assert token.expires_at == REQUESTED_AT + timedelta(seconds=3600)


def test_parse_expires_in_as_number():
    token = parse_token_response(
        {"access_token": "opaque", "token_type": "Bearer", "expires_in": 599},
        requested_at=REQUESTED_AT,
    )
    assert token.expires_at == REQUESTED_AT + timedelta(seconds=599)


def test_parse_jwt_exp_when_expires_in_missing():
    exp = REQUESTED_AT + timedelta(minutes=45)
    token = parse_token_response(
        {"access_token": _jwt_with_exp(exp), "token_type": "Bearer"},
        requested_at=REQUESTED_AT,
        default_lifetime=timedelta(hours=5),
    )
    assert token.expires_at == exp


def test_parse_expires_in_wins_over_jwt_exp():
    exp = REQUESTED_AT + timedelta(minutes=45)
    token = parse_token_response(
        {"access_token": _jwt_with_exp(exp), "token_type": "Bearer", "expires_in": 60},
        requested_at=REQUESTED_AT,
    )
    assert token.expires_at == REQUESTED_AT + timedelta(seconds=60)


@pytest.mark.parametrize("bad", ["soon", -5, 0, True, None, "nan"])
def test_parse_invalid_expires_in_falls_back(bad):
    token = parse_token_response(
        {"access_token": "opaque", "token_type": "Bearer", "expires_in": bad},
        requested_at=REQUESTED_AT,
        default_lifetime=timedelta(minutes=7),
    )
    assert token.expires_at == REQUESTED_AT + timedelta(minutes=7)


def test_parse_jwt_without_exp_uses_default():
    access_token = jwt.encode({"sub": "svc"}, "k" * 32, algorithm="HS256")
    token = parse_token_response(
        {"access_token": access_token, "token_type": "Bearer"},
        requested_at=REQUESTED_AT,
        default_lifetime=timedelta(minutes=7),
    )
    assert token.expires_at == REQUESTED_AT + timedelta(minutes=7)


def test_parse_keeps_scope_and_extra_fields():
    token = parse_token_response(
        {
            "access_token": "opaque",
            "token_type": "Bearer",
            "scope": "api refresh_token",
            "instance_url": "https://example.my.salesforce.test",
            "id": "https://login.salesforce.test/id/00D/005",
        },
        requested_at=REQUESTED_AT,
    )
    assert token.scope == "api refresh_token"
    assert token.extra["instance_url"] == "https://example.my.salesforce.test"
    assert "access_token" not in token.extra


def test_parse_missing_token_type_means_bearer():
    token = parse_token_response({"access_token": "opaque"}, requested_at=REQUESTED_AT)
    assert token.token_type == "Bearer"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "not a JSON object"),
        ({"token_type": "Bearer"}, "no access_token"),
        ({"access_token": "", "token_type": "Bearer"}, "no access_token"),
        ({"access_token": "x", "token_type": "mac"}, "only Bearer"),
    ],
)
def test_parse_rejects_malformed_response(body, message):
    with pytest.raises(TokenEndpointError, match=message):
        parse_token_response(body, requested_at=REQUESTED_AT)


def test_repr_hides_access_token():
    token = parse_token_response(
        {"access_token": "very-secret-token", "token_type": "Bearer"}, requested_at=REQUESTED_AT
    )
    assert "very-secret-token" not in repr(token)


def test_naive_datetime_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        AccessToken("t", "Bearer", datetime(2026, 1, 1), None, REQUESTED_AT)


def _token(lifetime: timedelta) -> AccessToken:
    return AccessToken("t", "Bearer", REQUESTED_AT + lifetime, None, REQUESTED_AT)


MARGIN = timedelta(minutes=2)
SKEW = timedelta(seconds=30)


def test_freshness_fresh_before_margin():
    token = _token(timedelta(hours=1))
    now = token.expires_at - SKEW - MARGIN - timedelta(seconds=1)
    assert token.freshness(now, MARGIN, SKEW) is Freshness.FRESH


def test_freshness_due_at_margin():
    token = _token(timedelta(hours=1))
    now = token.expires_at - SKEW - MARGIN
    assert token.freshness(now, MARGIN, SKEW) is Freshness.DUE


def test_freshness_expired_at_skew():
    token = _token(timedelta(hours=1))
    now = token.expires_at - SKEW
    assert token.freshness(now, MARGIN, SKEW) is Freshness.EXPIRED


def test_freshness_due_just_before_skew():
    token = _token(timedelta(hours=1))
    now = token.expires_at - SKEW - timedelta(microseconds=1)
    assert token.freshness(now, MARGIN, SKEW) is Freshness.DUE


def test_freshness_short_token_fresh_for_half_life():
    token = _token(timedelta(seconds=60))
    assert token.freshness(REQUESTED_AT + timedelta(seconds=29), MARGIN, SKEW) is Freshness.FRESH
    assert token.freshness(REQUESTED_AT + timedelta(seconds=30), MARGIN, SKEW) is Freshness.DUE


def test_freshness_short_token_expires_before_expiry():
    token = _token(timedelta(seconds=60))
    # Skew shrinks in proportion: 30 / 150 of the 30 s early window is 6 s.
    assert token.freshness(REQUESTED_AT + timedelta(seconds=53), MARGIN, SKEW) is Freshness.DUE
    assert token.freshness(REQUESTED_AT + timedelta(seconds=54), MARGIN, SKEW) is Freshness.EXPIRED


def test_freshness_zero_margin_and_skew():
    token = _token(timedelta(seconds=60))
    zero = timedelta(0)
    assert token.freshness(token.expires_at - timedelta(microseconds=1), zero, zero) is Freshness.FRESH
    assert token.freshness(token.expires_at, zero, zero) is Freshness.EXPIRED


def test_token_round_trips_through_json():
    token = parse_token_response(
        {"access_token": "opaque", "token_type": "Bearer", "expires_in": 60, "instance_url": "https://x.test"},
        requested_at=REQUESTED_AT,
    )
    assert AccessToken.from_json(token.to_json()) == token

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from airflow_provider_m2m.auth import KeyLoadError, WrongPassphraseError, load_private_key


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key, fmt=serialization.PrivateFormat.PKCS8, encryption=None) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption()
    ).decode()


def _same_key(loaded, original) -> bool:
    return loaded.private_numbers() == original.private_numbers()


def _load(value, passphrase=None):
    return load_private_key(value, passphrase, connection_id="sf_jwt", field="private_key")


def test_pkcs8_with_real_newlines(rsa_key):
    assert _same_key(_load(_pem(rsa_key)), rsa_key)


def test_pkcs1_traditional(rsa_key):
    pem = _pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert _same_key(_load(pem), rsa_key)


def test_literal_backslash_n(rsa_key):
    flattened = _pem(rsa_key).replace("\n", "\\n")
    assert "\n" not in flattened
    assert _same_key(_load(flattened), rsa_key)


def test_newlines_turned_into_spaces(rsa_key):
    flattened = _pem(rsa_key).replace("\n", " ")
    assert _same_key(_load(flattened), rsa_key)


def test_base64_of_pem(rsa_key):
    encoded = base64.b64encode(_pem(rsa_key).encode()).decode()
    assert _same_key(_load(encoded), rsa_key)


def test_base64_of_der(rsa_key):
    der = rsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert _same_key(_load(base64.b64encode(der).decode()), rsa_key)


def test_file_path(rsa_key, tmp_path):
    path = tmp_path / "key.pem"
    path.write_text(_pem(rsa_key))
    assert _same_key(_load(str(path)), rsa_key)


def test_encrypted_pkcs8_with_passphrase(rsa_key):
    pem = _pem(rsa_key, encryption=serialization.BestAvailableEncryption(b"open sesame"))
    assert "ENCRYPTED PRIVATE KEY" in pem
    assert _same_key(_load(pem, "open sesame"), rsa_key)


def test_encrypted_pkcs8_flattened(rsa_key):
    pem = _pem(rsa_key, encryption=serialization.BestAvailableEncryption(b"open sesame"))
    assert _same_key(_load(pem.replace("\n", " "), "open sesame"), rsa_key)


def test_wrong_passphrase_has_own_error(rsa_key):
    pem = _pem(rsa_key, encryption=serialization.BestAvailableEncryption(b"open sesame"))
    with pytest.raises(WrongPassphraseError) as caught:
        _load(pem, "guess")
    message = str(caught.value)
    assert "'sf_jwt'" in message
    assert "'private_key'" in message
    assert "passphrase" in message
    assert "guess" not in message


def test_missing_passphrase(rsa_key):
    pem = _pem(rsa_key, encryption=serialization.BestAvailableEncryption(b"open sesame"))
    with pytest.raises(KeyLoadError, match="encrypted; set the passphrase") as caught:
        _load(pem)
    assert not isinstance(caught.value, WrongPassphraseError)


def test_passphrase_for_plain_key_is_ignored(rsa_key):
    assert _same_key(_load(_pem(rsa_key), "unused"), rsa_key)


def test_ec_key(rsa_key):
    key = ec.generate_private_key(ec.SECP256R1())
    loaded = _load(_pem(key))
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == key.private_numbers()


def test_unsupported_key_type():
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(KeyLoadError, match="not supported"):
        _load(_pem(key))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("-----BEGIN PRIVATE KEY----- abc", "no complete BEGIN/END block"),
        ("not a key at all!", "neither PEM"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "cannot be parsed"),
    ],
)
def test_malformed_values(value, message):
    with pytest.raises(KeyLoadError, match=message) as caught:
        _load(value)
    assert "'sf_jwt'" in str(caught.value)


def test_key_text_never_in_message(rsa_key):
    pem = _pem(rsa_key)
    broken = pem.replace("MII", "XXX", 1)
    with pytest.raises(KeyLoadError) as caught:
        _load(broken)
    body_line = pem.splitlines()[2]
    assert body_line not in str(caught.value)

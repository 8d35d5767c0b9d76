import pytest

from email_service.errors import InvalidSettings, SecretUndecryptable
from email_service.security.secretbox import SecretBox, generate_key


def test_round_trip_and_ciphertext_hides_plaintext() -> None:
    box = SecretBox((generate_key(),))
    ciphertext = box.encrypt("hunter2")
    assert b"hunter2" not in ciphertext
    assert box.decrypt(ciphertext, name="p") == "hunter2"


def test_rotation_old_key_still_decrypts_and_reencrypt_moves_to_new() -> None:
    old, new = generate_key(), generate_key()
    written = SecretBox((old,)).encrypt("s3cret")
    rotating = SecretBox((new, old))
    assert rotating.decrypt(written, name="p") == "s3cret"
    moved = rotating.reencrypt(written, name="p")
    assert SecretBox((new,)).decrypt(moved, name="p") == "s3cret"


def test_wrong_key_is_a_clear_error_without_the_secret() -> None:
    ciphertext = SecretBox((generate_key(),)).encrypt("s3cret")
    with pytest.raises(SecretUndecryptable, match="imap_password_x") as caught:
        SecretBox((generate_key(),)).decrypt(ciphertext, name="imap_password_x")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("keys", [(), ("not-a-key",)], ids=["empty", "malformed"])
def test_bad_keys_name_the_variable(keys: tuple[str, ...]) -> None:
    with pytest.raises(InvalidSettings, match="EMAIL_SERVICE_SECRET_KEYS"):
        SecretBox(keys)


def test_repr_hides_keys() -> None:
    key = generate_key()
    assert key not in repr(SecretBox((key,)))

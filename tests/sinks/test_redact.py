"""redact(): secret values, URL user-info, credential query parameters, auth headers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from calibmon.redact import MASK, redact


def test_secret_values_are_replaced_everywhere() -> None:
    text = "login failed for pw=hunter2-xyz (hunter2-xyz)"
    out = redact(text, ["hunter2-xyz"])
    assert "hunter2-xyz" not in out
    assert out == f"login failed for pw={MASK} ({MASK})"


def test_url_encoded_forms_of_a_secret_are_replaced() -> None:
    secret = "p@ss w/rd&x"
    text = "GET /query?q=x&pass=p%40ss%20w%2Frd%26x and p%40ss+w%2Frd%26x"
    out = redact(text, [secret])
    assert "p%40ss" not in out
    assert secret not in out


def test_longer_secret_masked_before_a_shorter_one_inside_it() -> None:
    out = redact("token abcdef123456", ["abc", "abcdef123456"])
    assert "def123456" not in out


def test_url_userinfo_is_removed() -> None:
    out = redact("cannot connect to http://admin:s3cret@127.0.0.1:8086/write?db=x", [])
    assert "s3cret" not in out and "admin" not in out
    assert f"http://{MASK}@127.0.0.1:8086/write?db=x" in out


def test_credential_query_parameters_are_masked() -> None:
    url = "http://h:8086/write?db=lsst.cp&u=alice&p=s3cret&precision=ms&token=abc&Password=zz"
    out = redact(url, [])
    assert "s3cret" not in out and "abc" not in out and "zz" not in out
    assert "db=lsst.cp" in out and "u=alice" in out and "precision=ms" in out
    assert f"p={MASK}" in out and f"token={MASK}" in out


def test_authorization_headers_are_masked() -> None:
    for text in (
        "Authorization: Bearer eyJhbGciOi.abc.def",
        "{'Authorization': 'Token my-influx-token'}",
        '"authorization": "Basic YWxpY2U6czNjcmV0"',
    ):
        out = redact(text, [])
        for secret in ("eyJhbGciOi", "my-influx-token", "YWxpY2U6czNjcmV0"):
            assert secret not in out


def test_plain_text_is_left_alone() -> None:
    text = 'sink sasquatch: write: HTTP 404: database not found: "lsst.cp"'
    assert redact(text, ["", "unrelated-secret"]) == text
    assert redact("", ["x"]) == ""


_SECRET = st.text(st.characters(blacklist_characters="*", blacklist_categories=("Cs",)), min_size=4)


@given(secret=_SECRET, before=st.text(), after=st.text())
def test_a_known_secret_never_survives(secret: str, before: str, after: str) -> None:
    out = redact(before + secret + after, [secret])
    assert secret not in out

"""Secrets and PII redaction: every kind on realistic positives (in prose and in JSON tool args),
look-alikes that must stay, episodes redacted field by field, and no redaction at all in 994 real
HotpotQA runs."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from langdream.guard.redact import REDACTION_KINDS, placeholder, redact_episode, redact_text, redact_value
from langdream.types import Episode

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
OPENAI_KEY = "sk-proj-4fJk2lLm9QwErTyUiOpAsDfGhJkL1234567890abcdEF"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq2dD4mUvZ9\nQ2xK8fLw3Vn0pRs\n-----END RSA PRIVATE KEY-----"


def test_kinds_and_placeholder() -> None:
    assert REDACTION_KINDS == (
        "private_key", "api_key", "jwt", "bearer_token", "password", "card_number", "iban", "us_ssn", "email", "phone"
    )  # fmt: skip
    assert placeholder("email") == "[REDACTED:email]"


# (text, the secret that must disappear, its kind)
POSITIVES = [
    (PEM, "MIIEpAIBAAKCAQEA7bq2dD4mUvZ9", "private_key"),
    ("key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5v\n-----END OPENSSH PRIVATE KEY-----\nok",
     "b3BlbnNzaC1rZXktdjEAAAAABG5v", "private_key"),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTAp (cut)", "MIIFHDBOBgkqhkiG9w0", "private_key"),
    ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIqJ\n-----END EC PRIVATE KEY-----", "MHcCAQEEIIqJ", "private_key"),
    (f"my key is {OPENAI_KEY}, keep it safe", OPENAI_KEY, "api_key"),
    ("OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEF", "sk-abcdefghijklmnopqrstu", "api_key"),
    ("use sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdefghij please", "sk-ant-api03-AbCd", "api_key"),
    (f"aws_access_key_id = {AWS_KEY}", AWS_KEY, "api_key"),
    ("temporary ASIAY34FZKBOKMUTVV7A from STS", "ASIAY34FZKBOKMUTVV7A", "api_key"),
    ("token ghp_16C7e42F292c6912E7710c838347Ae178B4a ok", "ghp_16C7e42F292c6912E7710c8", "api_key"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN", "11ABCDEFG0123456789", "api_key"),
    ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "xoxb-123456789012", "api_key"),
    ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA1234567890abcdef", "api_key"),
    ("charge with sk_live_51H8abcdefghijklmnopqrstuvwx", "sk_live_51H8abcdef", "api_key"),
    ("hf token hf_abcdefghijklmnopqrstuvwxyzABCDEF1234", "hf_abcdefghijklmnopqrstuvwxyz", "api_key"),
    ('{"api_key": "abc123def456ghi"}', "abc123def456ghi", "api_key"),
    ("client_secret: 'XyZ-123_secretvalue'", "XyZ-123_secretvalue", "api_key"),
    ("const apiKey = Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5;", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5", "api_key"),
    ("x-api-key: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef", "api_key"),
    ("export STRIPE_KEY=whsec_abcdefghijklmnop", "whsec_abcdefghijklmnop", "api_key"),
    ("the token is 4f9c2a1b8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b for staging", "4f9c2a1b8e7d6c5b4a3f", "api_key"),
    (f"jwt {JWT}", JWT, "jwt"),
    (f'{{"id_token": "{JWT}"}}', JWT, "jwt"),
    ("curl -H 'Authorization: Bearer abc123DEF456ghi789'", "abc123DEF456ghi789", "bearer_token"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "bearer_token"),
    ("headers = {'Authorization': 'Token 9944b09199c62bcf9418ad846dd0e4bb'}", "9944b09199c62bcf", "bearer_token"),
    ("The API answered 401 until I sent bearer 7f3a9c1e5b2d8f4a.", "7f3a9c1e5b2d8f4a", "bearer_token"),
    ("password=hunter2", "hunter2", "password"),
    ("login with passwd: S3cr3t!", "S3cr3t!", "password"),
    ("pwd=letmein123 next", "letmein123", "password"),
    ('{"password": "correct horse battery staple"}', "correct horse battery staple", "password"),
    ("db_password = 'p@ss w0rd'", "p@ss w0rd", "password"),
    ("connect to postgres://admin:s3cretPass@db.example.com:5432/app", "s3cretPass", "password"),
    ("card 4111 1111 1111 1111 exp 12/26", "4111 1111 1111 1111", "card_number"),
    ('{"card": "5555-5555-5555-4444"}', "5555-5555-5555-4444", "card_number"),
    ("Amex 378282246310005 on file", "378282246310005", "card_number"),
    ("Paid with 4012888888881881.", "4012888888881881", "card_number"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "3704 0044 0532", "iban"),
    ("wire it to GB82WEST12345698765432 today", "GB82WEST12345698765432", "iban"),
    ("FR1420041010050500013M02606", "20041010050500013", "iban"),
    ("Her SSN is 123-45-6789.", "123-45-6789", "us_ssn"),
    ("email me at john.doe+tag@example.co.uk now", "john.doe+tag@example.co.uk", "email"),
    ('{"to": ["alice@corp.example.com"]}', "alice@corp.example.com", "email"),
    ("call +44 20 7946 0958 today", "7946 0958", "phone"),
    ("reach us at +1 (415) 555-2671.", "555-2671", "phone"),
    ("phone (415) 555-2671", "555-2671", "phone"),
    ("at 415-555-2671", "415-555-2671", "phone"),
    ("or 415.555.2671", "415.555.2671", "phone"),
    ("ring 415 555 2671 after six", "415 555 2671", "phone"),
    ("Tel: 030 1234 5678", "1234 5678", "phone"),
    ("Paris office: +33 1 42 68 53 00", "42 68 53 00", "phone"),
    ("toll free 1-800-555-0199", "555-0199", "phone"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "secret", "kind"), POSITIVES)
def test_each_kind_is_redacted(text: str, secret: str, kind: str) -> None:
    out, counts = redact_text(text)
    assert secret not in out
    assert placeholder(kind) in out
    assert counts[kind] >= 1
    assert all(k in REDACTION_KINDS for k in counts)
    # Counts are per kind only: never the secret itself.
    assert all(secret not in k for k in counts)
    # Redacting again finds nothing new.
    assert redact_text(out) == (out, Counter())


def test_kinds_covered_by_the_positives() -> None:
    assert {kind for _, _, kind in POSITIVES} == set(REDACTION_KINDS)


NEGATIVES = [
    "He was born in 1986 and died in 2012.",
    "The band was active 1990–1995, again 1990-1995 and in 2001-2004.",
    "On 2021-03-15, 15.03.2021 and 03/15/2021 the line was closed.",
    "The population was 3,000,000 in 2010 and 1.234.567 in 2020.",
    "Upgrade from version 1.2.3.4 to v10.0.19041.",
    "ISBN 978-3-16-148410-0, also 9783161484100 and 0-306-40615-2.",
    "ISBN 978 0 306 40615 7",
    "It sold 1 000 000 copies.",
    "The key figure was Lincoln.",
    "Key: the band formed in 1997",
    "The Secret: a 2006 film",
    "Token: a 2010 board game",
    "monkey=banana",
    "primary_key = id",
    "pad_token = [PAD]",
    "sort_key: name",
    "They were canonized as passion bearers in 2000.",
    "flag bearer Abdul-Rahman led the team",
    "The password is a secret string of characters.",
    "Password (game show) aired on CBS.",
    "His phone number is unknown.",
    "the years 1990 1995 2000 2005",
    "seasons 2015 2016 2017 2018",
    "ratio 4111 1111 1111 1112",  # fails the Luhn check
    "cell 17 held 1990 prisoners",
    "Mobile, Alabama had 195,111 people.",
    "x = 5 and y = 10",
    "AKIA is not a key, nor is Asia.",
    "Use sk-learn for the model.",
    "Visit https://en.wikipedia.org/wiki/Foo for details.",
    "user@localhost is not an address",
    "born 6 December 1958 (age 62)",
    "+5 points, scored +12.5% and C++ at +1",
    "coordinates 51.5074, -0.1278",
    "ISO 3166-1 alpha-2, RFC 2616 and Route 66",
    "SSN 000-12-3456 and 666-12-3456 are invalid",
    "NL91ABNA0417164301",  # mod-97 fails
    "Catalogue number 1234-5678-9012",
    "The 2010–11 season had 38 games and 1,024 goals.",
    "Invalid Action. Valid Actions are Lookup[<topic>] Search[<topic>] and Finish[<answer>].",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_look_alikes_stay(text: str) -> None:
    assert redact_text(text) == (text, Counter())


def test_a_key_inside_a_private_key_block_is_counted_once() -> None:
    text = f"-----BEGIN PRIVATE KEY-----\n{OPENAI_KEY}\n{AWS_KEY}\n-----END PRIVATE KEY-----\nafter"
    out, counts = redact_text(text)
    assert out == "[REDACTED:private_key]\nafter"
    assert counts == Counter({"private_key": 1})


def test_a_begin_line_without_end_redacts_to_the_end() -> None:
    out, counts = redact_text("before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nmore")
    assert out == "before\n[REDACTED:private_key]"
    assert counts == Counter({"private_key": 1})


def test_a_jwt_after_bearer_is_one_secret() -> None:
    out, counts = redact_text(f"Authorization: Bearer {JWT}")
    assert out == "Authorization: Bearer [REDACTED:jwt]"
    assert counts == Counter({"jwt": 1})


def test_a_key_assignment_keeps_the_key_name() -> None:
    out, _ = redact_text(f"api_key={OPENAI_KEY} and SECRET_KEY='hunter2-but-longer'")
    assert out == "api_key=[REDACTED:api_key] and SECRET_KEY='[REDACTED:api_key]'"


def test_several_kinds_in_one_sentence() -> None:
    text = f"Email bob@example.com or call 415-555-2671; card 4111111111111111, key {AWS_KEY}."
    out, counts = redact_text(text)
    assert out == (
        "Email [REDACTED:email] or call [REDACTED:phone]; card [REDACTED:card_number], key [REDACTED:api_key]."
    )
    assert counts == Counter({"email": 1, "phone": 1, "card_number": 1, "api_key": 1})


def test_redact_value_recurses() -> None:
    value = {
        "password": "hunter2",
        "token": "abc",
        "pad_token": "[PAD]",
        "key": "cache:1",
        "nested": [{"to": "a@b.com"}, ("call 415-555-2671", 7, None, True)],
        "bob@example.com": "key of a mapping",
        5: 3.5,
        "headers": {"Authorization": "Bearer abc123def456"},
    }
    out, counts = redact_value(value)
    assert out == {
        "password": "[REDACTED:password]",
        "token": "[REDACTED:api_key]",
        "pad_token": "[PAD]",
        "key": "cache:1",
        "nested": [{"to": "[REDACTED:email]"}, ("call [REDACTED:phone]", 7, None, True)],
        "[REDACTED:email]": "key of a mapping",
        5: 3.5,
        "headers": {"Authorization": "Bearer [REDACTED:bearer_token]"},
    }
    assert counts == Counter({"email": 2, "password": 1, "api_key": 1, "phone": 1, "bearer_token": 1})
    assert value["password"] == "hunter2"  # the input is not modified
    assert redact_value(42) == (42, Counter())
    assert redact_value(None) == (None, Counter())


def _episode() -> Episode:
    return Episode(
        id="ep-1",
        namespace=("support", "acme"),
        task="Refund order 1042 for alice@example.com, card 4111 1111 1111 1111",
        messages=[
            {"role": "system", "content": "Use the key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 for billing."},
            {"role": "user", "content": "My phone is +44 20 7946 0958."},
            {
                "role": "assistant",
                "content": "Looking up the customer.",
                "tool_calls": [
                    {
                        "name": "lookup_customer",
                        "args": {"email": "alice@example.com", "auth": {"password": "hunter2"}, "limit": 5},
                        "id": "c1",
                    }
                ],
            },
            {
                "role": "tool",
                "content": '{"name": "Alice", "iban": "DE89 3704 0044 0532 0130 00", "ssn": "123-45-6789"}',
                "tool_call_id": "c1",
                "name": "lookup_customer",
            },
        ],
        final_answer="Refunded to DE89370400440532013000; receipt sent to alice@example.com.",
        outcome={"success": True, "feedback": "Good, but never echo 415-555-2671."},
        thread_id="thread-7",
        run_id="run-9",
        injected_insight_ids=["ins_1"],
        metadata={"customer": {"email": "alice@example.com"}, "tags": ["vip"], "attempt": 2},
    )


def test_redact_episode_covers_every_free_text_field() -> None:
    episode = _episode()
    out, counts = redact_episode(episode)
    dumped = out.model_dump_json()
    secrets = (
        "alice@example.com",
        "4111 1111 1111 1111",
        "sk-ant-api03",
        "7946 0958",
        "hunter2",
        "DE89",
        "123-45-6789",
    )
    for secret in (*secrets, "415-555-2671"):
        assert secret not in dumped
    assert out.task == "Refund order 1042 for [REDACTED:email], card [REDACTED:card_number]"
    assert out.messages[2].tool_calls[0].name == "lookup_customer"
    assert out.messages[2].tool_calls[0].args == {
        "email": "[REDACTED:email]",
        "auth": {"password": "[REDACTED:password]"},
        "limit": 5,
    }
    assert out.outcome.feedback == "Good, but never echo [REDACTED:phone]."
    assert out.outcome.success is True
    assert out.metadata == {"customer": {"email": "[REDACTED:email]"}, "tags": ["vip"], "attempt": 2}
    assert counts == Counter(
        {"email": 4, "card_number": 1, "api_key": 1, "phone": 2, "password": 1, "iban": 2, "us_ssn": 1}
    )
    # Ids, the namespace and the injected insights are opaque and left alone; the input is not modified.
    assert (out.id, out.thread_id, out.run_id, out.namespace, out.injected_insight_ids) == (
        "ep-1", "thread-7", "run-9", ("support", "acme"), ["ins_1"]
    )  # fmt: skip
    assert episode.task.startswith("Refund order 1042 for alice@example.com")
    assert redact_episode(out) == (out, Counter())


def test_real_hotpotqa_runs_need_no_redaction(hotpotqa_episodes: list[Episode]) -> None:
    # 994 real ReAct runs (Wikipedia text full of years, dates, figures and names): measured 0 hits.
    assert len(hotpotqa_episodes) == 994
    total: Counter[str] = Counter()
    for episode in hotpotqa_episodes:
        out, counts = redact_episode(episode)
        total += counts
        assert (out == episode) == (not counts)
    assert total == Counter()


def test_redaction_is_fast(hotpotqa_episodes: list[Episode]) -> None:
    # ~0.3 ms for a 10 kB episode measured on a shared 2-core machine; the bound leaves a wide margin.
    big = [e for e in hotpotqa_episodes if len(e.model_dump_json()) >= 9000]
    assert big
    best = min(_cpu_seconds(lambda: [redact_episode(e) for e in big]) for _ in range(3)) / len(big)
    assert best < 0.005


def _cpu_seconds(run) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start

"""Privacy end to end: secrets and PII never reach a byte of the data home, and forgetting
leaves no byte of what was forgotten.

Every check reads the files themselves (the ledger, its WAL and shared memory, the chroma
directory, anything else under the data home) after the memory is closed, so nothing an API
filters or hides can make a leak look absent.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import sqlite3
import string
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from langdream import (
    DreamMemory,
    Episode,
    InsightAction,
    InsightStatus,
    NotFoundError,
    UnknownNamespaceError,
    UsageError,
)
from langdream.cli import app
from langdream.forget import quotes
from langdream.testing import FakeReflectionModel, ReflectionPrompt
from tests.conftest import write_jsonl
from tests.test_isolation import QUESTIONS

# Mixed-outcome HotpotQA questions of the shipped sample whose runs teach the extractive
# reflector active lessons (chosen in tests/test_isolation.py), and two questions every run failed.
MIXED = QUESTIONS[:10]
ALL_FAILED = ["0a6041f816", "2d1f99e0bf"]


def by_question(records: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        grouped[record["metadata"]["question_id"]].append(record)
    return grouped


def data_home_bytes(home: Path) -> dict[str, bytes]:
    """Every byte of every file under the data home, by relative path."""
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def ledger_bytes(blobs: dict[str, bytes]) -> bytes:
    return b"".join(blob for name, blob in blobs.items() if name.startswith("ledger.sqlite3"))


def where_in_sqlite(path: Path, needle: str) -> list[str]:
    """``table.column`` of every column of the SQLite file ``path`` (read-only, WAL included)
    holding ``needle``: says where a leak is when one is found."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")').fetchall()]:
                query = f'SELECT count(*) FROM "{table}" WHERE instr(CAST("{column}" AS BLOB), ?) > 0'
                if db.execute(query, (needle.encode(),)).fetchone()[0]:
                    found.append(f"{table}.{column}")
        return found
    finally:
        db.close()


def assert_no_log_files(blobs: dict[str, bytes]) -> None:
    logs = [name for name in blobs if name.endswith((".log", ".txt", ".out")) or "/log" in f"/{name}"]
    assert logs == [], f"log files in the data home: {logs}"


# ------------------------------------------------------------------------------------------------
# 500 realistic secrets and personal values, deterministic
# ------------------------------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
B64 = string.ascii_letters + string.digits + "+/"
URLSAFE = string.ascii_letters + string.digits + "-_"
FIRST = ["olivia", "liam", "amara", "noah", "yuki", "mateo", "sofia", "arjun", "chloe", "kwame", "ingrid", "diego"]
LAST = ["hartmann", "okafor", "lindqvist", "moreau", "tanaka", "castillo", "novak", "brennan", "achebe", "kowalski"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.co.uk", "uni-example.edu"]

PLAN = {
    "openai_key": 30,
    "anthropic_key": 25,
    "aws_access_key_id": 20,
    "aws_secret_access_key": 20,
    "github_token": 25,
    "slack_token": 20,
    "stripe_key": 20,
    "jwt": 30,
    "private_key": 15,
    "bearer_token": 25,
    "password": 40,
    "email": 60,
    "phone": 60,
    "card_number": 45,
    "iban": 35,
    "us_ssn": 30,
}
# Where a secret is planted; every field of an episode that holds free text, and feedback given later.
FIELDS = ("task", "tool_args", "tool_result", "assistant", "final_answer", "feedback", "metadata", "feedback_call")


@dataclass(frozen=True)
class Secret:
    kind: str  # what was planted (openai_key, email, ...)
    redaction: str  # the kind langdream counts it as
    text: str  # the exact value
    parts: tuple[str, ...]  # distinctive inner parts (key body without its prefix, local part, ...)

    @property
    def needles(self) -> set[bytes]:
        """Byte strings that must not occur anywhere: the value, its inner parts, and their JSON
        escapes (a PEM block is stored with \\n escapes inside JSON)."""
        found = set()
        for value in (self.text, *self.parts):
            found.add(value.encode())
            found.add(json.dumps(value, ensure_ascii=False)[1:-1].encode())
        return found


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _mixed(rng: random.Random, alphabet: str, n: int) -> str:
    """A random token with both letters and digits, as real keys have."""
    while True:
        value = _s(rng, alphabet, n)
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            return value


def _luhn(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + _s(rng, string.digits, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


def make_secret(kind: str, rng: random.Random) -> Secret:
    if kind == "openai_key":
        if rng.random() < 0.4:
            body = _mixed(rng, ALNUM, 48)
            text = f"sk-{body}"
        else:
            body = _mixed(rng, URLSAFE, rng.choice([64, 120]))
            text = f"sk-{rng.choice(['proj', 'svcacct'])}-{body}"
        return Secret(kind, "api_key", text, (body[4:28],))
    if kind == "anthropic_key":
        body = _mixed(rng, URLSAFE, 93)
        return Secret(kind, "api_key", f"sk-ant-api03-{body}AA", (body[10:34],))
    if kind == "aws_access_key_id":
        body = _mixed(rng, UPPER_DIGITS, 16)
        return Secret(kind, "api_key", rng.choice(["AKIA", "ASIA"]) + body, (body,))
    if kind == "aws_secret_access_key":
        body = _mixed(rng, B64, 40)
        return Secret(kind, "api_key", body, (body[8:28],))
    if kind == "github_token":
        if rng.random() < 0.3:
            body = _mixed(rng, ALNUM, 22) + "_" + _mixed(rng, ALNUM, 59)
            text = f"github_pat_{body}"
        else:
            body = _mixed(rng, ALNUM, 36)
            text = f"{rng.choice(['ghp', 'gho', 'ghs', 'ghu'])}_{body}"
        return Secret(kind, "api_key", text, (body[6:26],))
    if kind == "slack_token":
        body = f"{_s(rng, string.digits, 11)}-{_s(rng, string.digits, 13)}-{_mixed(rng, ALNUM, 24)}"
        return Secret(kind, "api_key", f"{rng.choice(['xoxb', 'xoxp', 'xoxa'])}-{body}", (body[-24:],))
    if kind == "stripe_key":
        body = _mixed(rng, ALNUM, rng.choice([24, 34, 99]))
        return Secret(kind, "api_key", f"{rng.choice(['sk_live', 'rk_live', 'sk_test'])}_{body}", (body[:20],))
    if kind == "jwt":
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
        claims = {
            "sub": _s(rng, string.digits, 10),
            "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            "iat": 1_700_000_000 + rng.randrange(10**7),
            "jti": _s(rng, ALNUM, 16),
        }
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        signature = _mixed(rng, URLSAFE, 43)
        return Secret(kind, "jwt", f"{header}.{payload}.{signature}", (payload, signature))
    if kind == "private_key":
        label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        lines = [_s(rng, B64, 64) for _ in range(rng.randint(4, 12))]
        text = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"
        return Secret(kind, "private_key", text, (lines[1], lines[-1]))
    if kind == "bearer_token":
        token = _mixed(rng, ALNUM + "-._~", rng.choice([32, 40, 64]))
        return Secret(kind, "bearer_token", token, (token[4:28],))
    if kind == "password":
        value = _mixed(rng, ALNUM, 6) + rng.choice("!#$%&*+-_=?^~") + _mixed(rng, ALNUM, 6)
        return Secret(kind, "password", value, ())
    if kind == "email":
        local = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randrange(100, 9999)}"
        return Secret(kind, "email", f"{local}@{rng.choice(DOMAINS)}", (local,))
    if kind == "phone":
        area, exchange, line = rng.randrange(201, 989), rng.randrange(200, 999), rng.randrange(1000, 9999)
        text = rng.choice(
            [
                f"+1 ({area}) {exchange}-{line}",
                f"({area}) {exchange}-{line}",
                f"{area}-{exchange}-{line}",
                f"{area}.{exchange}.{line}",
                f"+44 20 {rng.randrange(7000, 8999)} {line}",
                f"+49 30 {rng.randrange(1_000_000, 9_999_999)}",
            ]
        )
        return Secret(kind, "phone", text, (text[-9:],))
    if kind == "card_number":
        network = rng.choice(["visa", "mastercard", "amex", "discover"])
        if network == "amex":
            digits = _luhn(rng.choice(["34", "37"]), 15, rng)
            groups = [digits[:4], digits[4:10], digits[10:]]
        else:
            prefix = {"visa": "4", "mastercard": str(rng.randrange(51, 56)), "discover": "6011"}[network]
            digits = _luhn(prefix, 16, rng)
            groups = [digits[i : i + 4] for i in range(0, 16, 4)]
        text = rng.choice(["", " ", "-"]).join(groups)
        return Secret(kind, "card_number", text, (digits, text[5:14]))
    if kind == "iban":
        country = rng.choice(["DE", "GB", "FR", "NL", "ES", "IT"])
        bban = {
            "DE": lambda: _s(rng, string.digits, 18),
            "GB": lambda: rng.choice(["NWBK", "BARC", "LOYD"]) + _s(rng, string.digits, 14),
            "FR": lambda: _s(rng, string.digits, 10) + _s(rng, UPPER_DIGITS, 11) + _s(rng, string.digits, 2),
            "NL": lambda: rng.choice(["ABNA", "INGB", "RABO"]) + _s(rng, string.digits, 10),
            "ES": lambda: _s(rng, string.digits, 20),
            "IT": lambda: rng.choice(string.ascii_uppercase) + _s(rng, string.digits, 10) + _s(rng, UPPER_DIGITS, 12),
        }[country]()
        compact = _iban(country, bban)
        grouped = " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
        return Secret(kind, "iban", grouped if rng.random() < 0.5 else compact, (compact, compact[4:], grouped[-14:]))
    if kind == "us_ssn":
        area = rng.choice([a for a in range(1, 900) if a != 666])
        return Secret(kind, "us_ssn", f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}", ())
    raise ValueError(kind)


def phrase(secret: Secret, rng: random.Random) -> str:
    """The secret as someone would write it in prose, a log line, a config or a header."""
    v = secret.text
    options = {
        "openai_key": [f"export OPENAI_API_KEY={v}", f"using the key {v} for the call", f'openai.api_key = "{v}"'],
        "anthropic_key": [f"ANTHROPIC_API_KEY={v}", f"client = Anthropic(api_key='{v}')", f"my key is {v}"],
        "aws_access_key_id": [f"aws_access_key_id = {v}", f"AWS_ACCESS_KEY_ID={v}", f"access key {v} was rotated"],
        "aws_secret_access_key": [
            f"aws_secret_access_key = {v}",
            f"AWS_SECRET_ACCESS_KEY={v}",
            f'"SecretAccessKey": "{v}"',
        ],
        "github_token": [f"GITHUB_TOKEN={v}", f"git clone https://{v}@github.com/acme/app.git", f"token {v}"],
        "slack_token": [f"SLACK_BOT_TOKEN={v}", f"slack token: {v}", f"posting with {v}"],
        "stripe_key": [f"STRIPE_SECRET_KEY={v}", f"stripe.api_key = '{v}'", f"charged via {v}"],
        "jwt": [f"Authorization: Bearer {v}", f"id_token={v}", f"session cookie {v}"],
        "private_key": [f"deploy key:\n{v}\n", v],
        "bearer_token": [
            f"Authorization: Bearer {v}",
            f"curl -H 'Authorization: Bearer {v}' https://api.example.com",
            f"bearer {v}",
        ],
        "password": [
            f"password={v}",
            f"PASSWORD: {v}",
            f'{{"password": "{v}"}}',
            f"db_password='{v}'",
            f"postgres://admin:{v}@db.internal:5432/app",
        ],
        "email": [f"contact {v} for access", f"From: {v}", f"<{v}>", f"email={v}"],
        "phone": [f"call me at {v}", f"phone: {v}", f"Tel. {v}", f"reach the owner on {v} after 5pm"],
        "card_number": [f"card {v} exp 04/27", f"paid with {v}", f"cc_number: {v}"],
        "iban": [f"IBAN {v}", f"wire to {v} by Friday", f"account: {v}"],
        "us_ssn": [f"SSN {v}", f"social security number {v}", f"ssn: {v}"],
    }[secret.kind]
    return rng.choice(options)


def nested(secret: Secret, rng: random.Random) -> dict:
    """The secret inside a tool call's arguments, the way tools take credentials and contacts."""
    v = secret.text
    options = {
        "api_key": [{"credentials": {"api_key": v}}, {"env": {"SERVICE_TOKEN": v}}, {"headers": {"x-api-key": v}}],
        "jwt": [{"headers": {"Authorization": f"Bearer {v}"}}, {"auth": {"id_token": v}}],
        "private_key": [{"ssh": {"private_key": v}}],
        "bearer_token": [{"headers": {"Authorization": f"Bearer {v}"}}],
        "password": [{"auth": {"username": "admin", "password": v}}, {"dsn": f"postgres://admin:{v}@db:5432/app"}],
        "email": [{"to": [v]}, {"contact": {"email": v}}],
        "phone": [{"contact": {"phone": v}}, {"sms": {"to": v}}],
        "card_number": [{"payment": {"card": v}}],
        "iban": [{"payout": {"iban": v}}],
        "us_ssn": [{"applicant": {"ssn": v}}],
    }[secret.redaction]
    return rng.choice(options)


def make_secrets(seed: int = 20240607) -> list[Secret]:
    rng = random.Random(seed)
    secrets = [make_secret(kind, rng) for kind, n in PLAN.items() for _ in range(n)]
    assert len(secrets) == 500 and len({s.text for s in secrets}) == 500
    return secrets


@dataclass
class Planted:
    records: list[dict]  # episodes as JSON objects
    where: dict[int, list[tuple[Secret, str]]]  # episode index -> (secret, field)
    feedback: dict[int, str]  # episode index -> note for memory.feedback

    def table(self) -> Counter:
        return Counter((secret.kind, field) for items in self.where.values() for secret, field in items)


def plant(records: list[dict], secrets: list[Secret], seed: int = 7) -> Planted:
    """Spread the secrets over the episodes' tasks, tool call arguments (nested), tool results,
    assistant messages, final answers, feedback notes and metadata, and feedback given later."""
    rng = random.Random(seed)
    episodes = [json.loads(json.dumps(r)) for r in records]
    where: dict[int, list[tuple[Secret, str]]] = defaultdict(list)
    feedback: dict[int, str] = {}
    for k, secret in enumerate(secrets):
        where[(k * 37) % len(episodes)].append((secret, FIELDS[k % len(FIELDS)]))
    for index, items in where.items():
        episode = episodes[index]
        assistants = [m for m in episode["messages"] if m["role"] == "assistant"]
        calls = [c for m in assistants for c in m.get("tool_calls", [])]
        tools = [m for m in episode["messages"] if m["role"] == "tool"]
        assert calls and tools, "every HotpotQA ReAct run calls a tool"
        for n, (secret, field) in enumerate(items):
            text = phrase(secret, rng)
            if field == "task":
                episode["task"] = f"{episode['task']} ({text})"
            elif field == "tool_args":
                calls[n % len(calls)]["args"].setdefault("options", {})[f"part{n}"] = nested(secret, rng)
            elif field == "tool_result":
                tools[n % len(tools)]["content"] += f"\n{text}"
            elif field == "assistant":
                assistants[n % len(assistants)]["content"] += f" {text}"
            elif field == "final_answer":
                episode["final_answer"] = f"{episode.get('final_answer') or ''} ({text})"
            elif field == "feedback":
                episode["outcome"]["feedback"] = f"{episode['outcome'].get('feedback') or ''} Reviewer: {text}"
            elif field == "metadata":
                ticket = episode["metadata"].setdefault("ticket", {"notes": [], "contacts": []})
                (ticket["notes"] if n % 2 else ticket["contacts"]).append(text if n % 2 else nested(secret, rng))
            else:
                feedback[index] = f"{feedback.get(index, 'Reviewer note:')} {text}"
        for message in episode["messages"]:
            if message["role"] == "user":
                message["content"] = episode["task"]
                break
    return Planted(episodes, dict(where), feedback)


def copier(prompt: ReflectionPrompt) -> dict:
    """A reflector that copies what it was shown into its lessons: the lines around every
    placeholder, tasks, tool output. Whatever redaction missed would end up in an insight."""
    shown = [e.id for e in prompt.episodes]
    operations = []
    for episode in prompt.episodes[:6]:
        lines = episode.text.splitlines()
        around = [line for line in lines if "[REDACTED:" in line] or lines[1:3]
        operations.append(
            {
                "action": "add",
                "claim": "Remember: " + " ".join(around)[:600],
                "applies_when": lines[0][:300],
                "evidence": shown,
                "confidence": 0.9,
            }
        )
    if prompt.insights:
        operations.append(
            {
                "action": "edit",
                "insight_id": prompt.insights[0].id,
                "claim": prompt.text[-500:],
                "evidence": shown,
                "confidence": 0.9,
            }
        )
    return {"operations": operations}


NS_EXTRACTIVE = ("privacy", "extractive")
NS_LLM = ("privacy", "llm")


def test_no_planted_secret_reaches_any_byte_of_the_data_home(make_memory, tmp_path, hotpotqa_records, caplog):
    caplog.set_level(logging.DEBUG, logger="langdream")
    grouped = by_question(hotpotqa_records)
    base = [r for q in MIXED for r in grouped[q]]
    secrets = make_secrets()
    # Needles must be distinctive: absent from the real runs and from every other secret.
    corpus = json.dumps(base, ensure_ascii=False).encode()
    for secret in secrets:
        for needle in secret.needles:
            assert needle not in corpus and len(needle) >= 9, (secret.kind, needle)
            assert not any(needle in other.text.encode() for other in secrets if other is not secret), (
                secret.kind,
                needle,
            )
    planted = plant(base, secrets)
    records = []
    for index, record in enumerate(planted.records):
        namespace = NS_EXTRACTIVE if index % 2 == 0 else NS_LLM
        records.append(
            {**record, "id": f"priv-{index:03d}", "run_id": f"run-priv-{index:03d}", "namespace": list(namespace)}
        )

    home = tmp_path / "home"
    memory = make_memory(home)
    recorded, ingested = records[:60], records[60:]
    for record in recorded:
        assert memory.record(Episode.model_validate(record))
    report = memory.ingest(write_jsonl(tmp_path / "runs.jsonl", ingested))
    assert report.added == len(ingested) and not report.errors

    # Every stored episode counts what it had redacted, by kind (values are never kept).
    for index, record in enumerate(records):
        stored = memory.episode(record["id"])
        counts = (stored.metadata.get("langdream") or {}).get("redacted") or {}
        expected = Counter(s.redaction for s, field in planted.where.get(index, []) if field != "feedback_call")
        for kind, n in expected.items():
            assert counts.get(kind, 0) >= n, (record["id"], kind, counts, expected)
    for index, note in planted.feedback.items():
        episode = memory.feedback(f"run-priv-{index:03d}", success=index % 3 != 0, feedback=note)
        assert "[REDACTED:" in (episode.outcome.feedback or "")

    (extractive,) = memory.dream(NS_EXTRACTIVE)
    model = FakeReflectionModel(responder=copier)
    (llm,) = memory.dream(NS_LLM, model=model)
    assert extractive.clusters > 0 and llm.llm_calls > 0
    shown = "\n".join(p.text for p in model.prompts)
    assert "[REDACTED:" in shown
    copied = [i for i in memory.insights(NS_LLM, status="all") if "[REDACTED:" in i.text]
    assert copied, "the copying reflector must have carried placeholders into insights"
    # Feedback changed outcomes after the first dream: dream again (nearby insights are shown too).
    memory.dream(NS_EXTRACTIVE)
    memory.dream(NS_LLM, model=model)
    insights = memory.insights(status="all")
    assert insights
    for insight in insights:
        memory.explain(insight.id)
    memory.recall(records[0]["task"], NS_EXTRACTIVE)
    memory.close()

    blobs = data_home_bytes(home)
    assert_no_log_files(blobs)
    ledger = ledger_bytes(blobs)
    assert b"[REDACTED:" in ledger, "the scan must see the stored episodes"
    assert records[5]["task"].split(" (")[0].encode() in ledger, "the scan must see the stored text"
    leaks = sorted(
        {
            (secret.kind, field, name)
            for index, items in planted.where.items()
            for secret, field in items
            for name, blob in blobs.items()
            if any(needle in blob for needle in secret.needles)
        }
    )
    logged = sorted({s.kind for s in secrets if any(n.decode(errors="ignore") in caplog.text for n in s.needles)})
    table = planted.table()
    print(
        f"\nplanted {len(secrets)} secrets: by kind {dict(Counter(s.kind for s in secrets))}; "
        f"by field {dict(Counter(field for _, field in table.elements()))}; "
        f"{len(recorded)} episodes recorded, {len(ingested)} ingested, {len(planted.feedback)} feedback calls; "
        f"{len(blobs)} files, {sum(map(len, blobs.values()))} bytes scanned; {len(leaks)} leaks"
    )
    assert leaks == [], f"{len(leaks)} secrets found in the data home (kind, field, file): {leaks}"
    assert logged == [], f"secrets in log records: {logged}"


def test_a_fine_grained_github_token_is_redacted_wherever_it_stands(memory):
    """github_pat_ tokens are in the documented key shapes; they must not depend on the text
    happening to contain "gh" somewhere else."""
    token = "github_pat_11AB2CDEF0aBcDeFiJkLmNoP_qRsTuVwXyZ0123456789AbCdEfIjKlMnOpQrStUvWxYz0123456789AbCdE"
    episode = Episode(
        id="gh-1",
        namespace=("privacy",),
        task="Clone the repository and list its tags",
        final_answer=f"cloned with https://{token}@github.com/acme/app.git",
        messages=[{"role": "assistant", "content": f"pushed using {token}"}],
    )
    memory.record(episode)
    stored = memory.episode("gh-1")
    assert token not in stored.model_dump_json()
    assert stored.metadata["langdream"]["redacted"].get("api_key", 0) >= 2


def test_a_reflector_that_reproduces_a_secret_cannot_store_it(make_memory, tmp_path, hotpotqa_records):
    """A model can write a secret it was never shown (it saw it elsewhere, or guessed a shape).
    Claims are redacted before they are stored; nothing the model said may keep the secret either."""
    everything = make_secrets()
    secrets = [next(s for s in everything if s.kind == kind) for kind in ("anthropic_key", "email", "card_number")]
    leaked = " ".join(s.text for s in secrets)

    def reproduces(prompt: ReflectionPrompt) -> dict:
        shown = [e.id for e in prompt.episodes]
        return {
            "operations": [
                {
                    "action": "add",
                    "claim": f"Check every entity with its own search; authenticate with {leaked}.",
                    "applies_when": f"runs that need {secrets[0].text}",
                    "evidence": shown,
                    "confidence": 0.9,
                }
            ]
        }

    home = tmp_path / "home"
    memory = make_memory(home, model=FakeReflectionModel(responder=reproduces))
    for record in by_question(hotpotqa_records)[MIXED[0]]:
        memory.record(Episode.model_validate({**record, "namespace": ["privacy"]}))
    (report,) = memory.dream("privacy")
    assert report.llm_calls > 0
    insights = memory.insights("privacy", status="all")
    assert insights and all(secret.text not in i.text + i.applies_when for i in insights for secret in secrets)
    memory.close()
    found = sorted(
        {(s.kind, name) for name, blob in data_home_bytes(home).items() for s in secrets if s.text.encode() in blob}
    )
    if found:
        columns = sorted({c for s in secrets for c in where_in_sqlite(home / "ledger.sqlite3", s.text)})
        pytest.fail(f"a secret the reflector wrote is stored raw: {found}, in ledger columns {columns}")


# ------------------------------------------------------------------------------------------------
# Forgetting
# ------------------------------------------------------------------------------------------------

NS_A = ("tenant-a",)
NS_B = ("tenant-b",)


@dataclass
class Tenant:
    namespace: tuple[str, ...]
    canary: dict[str, str]  # episode id -> its canary
    tasks: list[str]


def add_tenant(memory: DreamMemory, records: list[dict], tag: str, questions: list[str], seed: int) -> Tenant:
    """One tenant's real runs, each with its own canary in the task (first, so lessons that quote a
    task quote it), the tool results, the final answer, the feedback and the metadata. Threads are
    sessions of one variant and trial, spanning questions. Within a question the successful runs
    are recorded first."""
    rng = random.Random(seed)
    grouped = by_question(records)
    tenant = Tenant((f"tenant-{tag}",), {}, [])
    n = 0
    for question in questions:
        for record in sorted(grouped[question], key=lambda r: not r["outcome"]["success"]):
            canary = f"FGT{tag.upper()}-{n:03d}-{rng.randrange(10**7, 10**8)}"
            task = f"[case {canary}] {record['task']}"
            messages = json.loads(json.dumps(record["messages"]))
            for message in messages:
                if message["role"] == "user":
                    message["content"] = task
                elif message["role"] == "tool":
                    message["content"] += f" [{canary}]"
            meta = record["metadata"]
            episode = Episode.model_validate(
                {
                    **record,
                    "id": f"ep-{tag}{n:03d}",
                    "run_id": f"run-{tag}{n:03d}",
                    "namespace": tenant.namespace,
                    "thread_id": f"{tag}-{meta['variant']}-t{meta['trial']}",
                    "task": task,
                    "messages": messages,
                    "final_answer": f"{record.get('final_answer') or ''} ({canary})",
                    "outcome": {
                        **record["outcome"],
                        "feedback": f"{record['outcome'].get('feedback') or ''} ({canary})",
                    },
                    "metadata": {**meta, "case": canary},
                }
            )
            assert memory.record(episode)
            tenant.canary[episode.id] = canary
            n += 1
        tenant.tasks.append(task)
    return tenant


def snapshot(memory: DreamMemory, namespace: tuple[str, ...], tasks: list[str]) -> dict:
    return {
        "episodes": sorted((e.id, e.revision, e.consolidated_by) for e in memory.episodes(namespace, limit=100_000)),
        "insights": sorted(
            (i.id, i.status.value, i.version, i.text, tuple(i.evidence))
            for i in memory.insights(namespace, status="all")
        ),
        "recall": [memory.recall(task, namespace).insight_ids for task in tasks],
    }


def test_forget_a_namespace_leaves_no_byte_of_it_and_keeps_the_other(make_memory, tmp_path, hotpotqa_records):
    home = tmp_path / "home"
    memory = make_memory(home)
    questions = MIXED + ALL_FAILED
    a = add_tenant(memory, hotpotqa_records, "a", questions, seed=1)
    b = add_tenant(memory, hotpotqa_records, "b", questions, seed=2)
    assert len(a.canary) >= 100 and len(b.canary) >= 100
    memory.dream()
    a_insights = memory.insights(NS_A, status="all")
    assert any(i.status is InsightStatus.ACTIVE for i in a_insights)
    assert any(i.status is InsightStatus.ACTIVE for i in memory.insights(NS_B))
    assert any(any(c in i.text for c in a.canary.values()) for i in a_insights), "some lesson quotes a task of A"
    before = snapshot(memory, NS_B, b.tasks)
    assert any(before["recall"])

    report = memory.forget(namespace=NS_A)
    assert report.episodes == len(a.canary) and report.namespaces == [NS_A]
    assert report.insights_deleted == len(a_insights) and report.bytes_after < report.bytes_before
    assert NS_A not in {s.namespace for s in memory.namespaces()}
    with pytest.raises(UnknownNamespaceError):
        memory.episodes(NS_A)
    assert memory.recall(a.tasks[0], NS_A).insights == []
    for insight in a_insights:
        with pytest.raises(NotFoundError):
            memory.explain(insight.id)
    assert all(job.namespace != NS_A for job in memory.jobs(limit=1000))
    assert snapshot(memory, NS_B, b.tasks) == before
    memory.close()

    blobs = data_home_bytes(home)
    assert_no_log_files(blobs)
    left = sorted({(c, name) for c in a.canary.values() for name, blob in blobs.items() if c.encode() in blob})
    assert left == [], f"{len(left)} canaries of the forgotten namespace are still on disk: {left[:10]}"
    ledger = ledger_bytes(blobs)
    missing = [c for c in b.canary.values() if c.encode() not in ledger]
    assert missing == [], f"the other namespace lost data: {missing[:10]}"

    reopened = make_memory(home)
    # Recall as the process that owns the index, as `before` was (a process that does not own it
    # searches the ledger, whose learned-nearby channel works from clusters rather than runs).
    assert reopened.index.try_own()
    assert snapshot(reopened, NS_B, b.tasks) == before


def expected_statuses(before: dict, episodes: dict, gone: set[str], settings) -> dict[str, InsightStatus]:
    """What forgetting ``gone`` must do to each insight that cited one of them, or quoted one:
    an insight whose wording quotes a forgotten run is revoked (its text is erased)."""
    expected = {}
    for insight in before.values():
        if any(quotes(f"{insight.text}\n{insight.applies_when}", episodes[e]) for e in gone):
            expected[insight.id] = InsightStatus.REVOKED
            continue
        if not set(insight.evidence) & gone:
            continue
        remaining = [e for e in insight.evidence if e not in gone]
        threads = len({episodes[e].thread_id for e in remaining})
        status = insight.status
        if status is InsightStatus.ACTIVE and (
            len(remaining) < settings.min_support
            or threads < settings.min_threads
            or insight.confidence < settings.min_confidence
        ):
            status = InsightStatus.REVOKED
        if not remaining:
            status = InsightStatus.REVOKED
        expected[insight.id] = status
    return expected


def forget_and_check(memory: DreamMemory, tenant: Tenant, gone: set[str], **filters) -> tuple[object, dict]:
    before = {i.id: i for i in memory.insights(tenant.namespace, status="all")}
    episodes = {e.id: e for e in memory.episodes(tenant.namespace, limit=100_000)}
    assert gone <= set(episodes)
    expected = expected_statuses(before, episodes, gone, memory.settings)
    assert expected, "the forgotten episodes must be cited by some insight"

    report = memory.forget(**filters)
    assert report.episodes == len(gone)
    revoked = {
        i
        for i, status in expected.items()
        if status is InsightStatus.REVOKED and before[i].status is not InsightStatus.REVOKED
    }
    assert (report.insights_revoked, report.insights_updated) == (len(revoked), len(expected) - len(revoked))
    for episode_id in gone:
        with pytest.raises(NotFoundError):
            memory.episode(episode_id)
    after = {i.id: i for i in memory.insights(tenant.namespace, status="all")}
    assert set(after) == set(before)
    for insight_id, insight in after.items():
        if insight_id not in expected:
            assert insight.version == before[insight_id].version, "an insight that cited none of them changed"
            continue
        assert insight.evidence == [e for e in before[insight_id].evidence if e not in gone]
        assert insight.support == len(insight.evidence)
        assert insight.status is expected[insight_id], (insight_id, insight.status, insight.status_reason)
        history = memory.history(insight_id)
        assert history[-1].action is InsightAction.FORGET and history[-1].version == before[insight_id].version + 1
        explained = memory.explain(insight_id)
        for evidence in explained.evidence:
            if evidence.id in gone:
                assert evidence.task is None and evidence.outcome == "forgotten"
    for insight in memory.insights(tenant.namespace):  # every active insight
        assert not set(insight.evidence) & gone
        assert insight.support >= 3 and insight.threads >= 2
    for task in tenant.tasks:
        recall = memory.recall(task, tenant.namespace)
        assert not any(tenant.canary[e] in recall.text for e in gone)
        assert all(not set(r.insight.evidence) & gone for r in recall.insights)
    return report, {i: after[i].status for i in expected}


def test_forget_episodes_and_a_thread_recounts_revokes_and_erases_them(make_memory, tmp_path, hotpotqa_records):
    home = tmp_path / "home"
    memory = make_memory(home)
    b = add_tenant(memory, hotpotqa_records, "b", MIXED + ALL_FAILED, seed=2)
    memory.dream()
    insights = memory.insights(NS_B, status="all")
    active = [i for i in insights if i.status is InsightStatus.ACTIVE]
    assert active and len(b.canary) >= 100

    # A lesson about a kind of task quotes one run's task (with its canary), which it need not cite.
    quoted = {e for e, c in b.canary.items() for i in insights if c in i.text + i.applies_when}
    quoted_not_cited = {e for e, c in b.canary.items() for i in insights if c in i.text and e not in i.evidence}
    assert quoted
    # Forget all but two of the evidence of the narrowest active lesson: it must be revoked.
    narrow = min((i for i in active if i.support >= 4), key=lambda i: (i.support, i.id))
    gone = set(narrow.evidence[: narrow.support - 2]) | quoted
    report, statuses = forget_and_check(memory, b, gone, episode=sorted(gone))
    assert statuses[narrow.id] is InsightStatus.REVOKED and report.insights_revoked >= 1

    # A whole thread (a session that spans questions), by the CLI's --thread twin.
    threads = Counter(e.thread_id for e in memory.episodes(NS_B, limit=100_000))
    thread = max(sorted(threads), key=lambda t: threads[t])
    gone_thread = {e.id for e in memory.episodes(NS_B, limit=100_000) if e.thread_id == thread}
    forget_and_check(memory, b, gone_thread, thread=thread)
    forgotten = gone | gone_thread
    memory.close()

    blobs = data_home_bytes(home)
    left = sorted({(e, name) for e in forgotten for name, blob in blobs.items() if b.canary[e].encode() in blob})
    kept = ledger_bytes(blobs)
    missing = [e for e in b.canary if e not in forgotten and b.canary[e].encode() not in kept]
    print(
        f"\nforget: {len(gone)} episodes by id ({len(quoted)} quoted by a lesson, {len(quoted_not_cited)} of them "
        f"not cited by it), {len(gone_thread)} by thread {thread!r}; {len(left)} canaries left on disk"
    )
    assert missing == [], f"episodes that were not forgotten lost their text: {missing[:10]}"
    if left:
        columns = sorted({c for e, _ in left for c in where_in_sqlite(home / "ledger.sqlite3", b.canary[e])})
        pytest.fail(
            f"{len(left)} canaries of forgotten episodes are still on disk (episode, file): {left[:10]}; "
            f"ledger columns: {columns}; episodes quoted by a lesson that does not cite them: {sorted(quoted_not_cited)}"
        )


def test_forget_leaves_no_vector_or_id_of_forgotten_episodes_in_the_index_files(
    make_memory, tmp_path, hotpotqa_records
):
    """The index holds what was derived from an episode's text: its embedding (from which text
    can be approximately recovered) and its id. Forgetting must not leave them in chroma's files."""
    home = tmp_path / "home"
    memory = make_memory(home)
    a = add_tenant(memory, hotpotqa_records, "a", MIXED[:4], seed=1)
    b = add_tenant(memory, hotpotqa_records, "b", MIXED[:4], seed=2)
    memory.dream()
    vectors = memory.index.episode_vectors(sorted(a.canary), NS_A)
    gone_b = sorted(b.canary)[:10]
    vectors.update(memory.index.episode_vectors(gone_b, NS_B))
    assert len(vectors) == len(a.canary) + len(gone_b)
    memory.forget(namespace=NS_A)
    memory.forget(episode=gone_b)
    memory.close()

    blobs = data_home_bytes(home)
    # 16 float32s of a 384-dimensional vector: no other content matches them by chance.
    left_vectors = sorted(
        {
            (e, name)
            for e, v in vectors.items()
            for name, blob in blobs.items()
            if np.asarray(v, np.float32).tobytes()[:64] in blob
        }
    )
    # Ids stay in the ledger's audit trail (an insight's history names the runs it once cited, as
    # forgotten); they must not stay in the index.
    left_ids = sorted(
        {(e, name) for e in vectors for name, blob in blobs.items() if "chroma" in name and e.encode() in blob}
    )
    print(
        f"\nindex after forget: {len({e for e, _ in left_vectors})} of {len(vectors)} vectors, {len({e for e, _ in left_ids})} ids left"
    )
    assert left_vectors == [], f"{len(left_vectors)} embeddings of forgotten episodes still on disk: {left_vectors[:5]}"
    assert left_ids == [], f"{len(left_ids)} ids of forgotten episodes still on disk: {left_ids[:5]}"


def test_forget_without_a_filter_is_refused_and_deletes_nothing(make_memory, tmp_path, hotpotqa_records):
    home = tmp_path / "home"
    memory = make_memory(home)
    add_tenant(memory, hotpotqa_records, "b", MIXED[:3], seed=2)
    memory.dream()

    def counts(m: DreamMemory) -> tuple:
        return (
            m.ledger.count_episodes(),
            len(m.insights(status="all")),
            len(m.jobs(limit=1000)),
            m.index.episode_count(),
            sorted(s.model_dump_json() for s in m.namespaces()),
        )

    before = counts(memory)
    assert before[0] > 0 and before[1] > 0
    for filters in ({}, {"namespace": None, "episode": None, "thread": None}):
        with pytest.raises(UsageError) as refused:
            memory.forget(**filters)
        assert refused.value.hint and "namespace" in refused.value.hint
    # An empty list of episodes names nothing: refused, or a no-op; never an internal error.
    try:
        report = memory.forget(episode=[])
    except UsageError:
        pass
    else:
        assert report.episodes == 0
    assert counts(memory) == before
    memory.close()

    result = CliRunner().invoke(app, ["--home", str(home), "forget"])
    assert result.exit_code == 1
    assert "hint:" in result.stderr and "--namespace" in result.stderr
    assert counts(make_memory(home)) == before

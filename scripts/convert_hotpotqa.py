"""Convert the Reflexion HotpotQA ReAct logs into langdream episode JSONL.

The logs (noahshinn/reflexion, MIT) hold real ReAct runs: each run is a question,
``Thought n / Action n / Observation n`` steps and a verdict. This script turns every run into
one episode in the JSONL format that ``langdream ingest`` accepts: a user message with the
question, an assistant message with a tool call per ``Search[...]`` / ``Lookup[...]`` step and a
tool message with its observation, and a final assistant message with the last thought and the
answer of ``Finish[...]`` (also given as ``final_answer``). The verdict becomes the outcome; the gold answer becomes the outcome feedback
(it is what the HotpotQA environment told the agent).

Usage (from the repository root)::

    python scripts/convert_hotpotqa.py ../shared/data/reflexion-hotpotqa \
        langdream/_data/hotpotqa_react.jsonl.gz

The output is deterministic: the same logs give byte-identical output.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

SOURCES = {
    "react_base": "react_base_100q_5trials.txt",
    "react_reflexion": "react_reflexion_100q_5trials.txt",
}
_TRIAL = re.compile(r"^BEGIN TRIAL (\d+)$")
_GROUP = re.compile(r"^-+ BEGIN (CORRECT|INCORRECT|HALTED) AGENTS -+$")
_STEP = re.compile(r"^(Thought|Action|Observation) (\d+): ?(.*)$")
_ACTION = re.compile(r"^(\w+)\[(.*)\]$", re.S)
_REFLEXION_PREAMBLE = "You have attempted to answer following question before and failed."
_EPOCH = datetime(2023, 3, 20, tzinfo=timezone.utc)


def _split_runs(text: str):
    """Yield (trial, group, lines) for every run in one log file."""
    trial, group, run = 0, None, None
    for line in text.splitlines():
        if m := _TRIAL.match(line.strip()):
            trial = int(m.group(1))
            continue
        if m := _GROUP.match(line.strip()):
            if run:
                yield trial, group, run
            group, run = m.group(1), None
            continue
        if line.startswith("Question:"):
            if run:
                yield trial, group, run
            run = [line]
        elif run is not None and not line.startswith("####") and not line.startswith("Trial summary"):
            run.append(line)
    if run:
        yield trial, group, run


def _parse_run(lines: list[str]) -> dict:
    question_lines, reflections, steps, gold = [], [], [], None
    section = "question"
    for line in lines:
        if line.startswith("Correct answer:"):
            gold = line.split(":", 1)[1].strip()
            continue
        if line.startswith("Reflections:"):
            section = "reflections"
            continue
        if m := _STEP.match(line):
            section = "steps"
            steps.append([m.group(1), int(m.group(2)), m.group(3)])
            continue
        if section == "question":
            question_lines.append(line)
        elif section == "reflections" and line.strip():
            reflections.append(line.strip().lstrip("- ").strip())
        elif section == "steps" and steps:  # an observation that spans several lines
            steps[-1][2] += "\n" + line
    question = "\n".join(question_lines)[len("Question:"):].strip()
    question = question.split(_REFLEXION_PREAMBLE)[0].strip()
    return {"question": question, "reflections": reflections, "steps": steps, "gold": gold}


def _messages(run: dict) -> tuple[list[dict], str | None, str | None]:
    messages: list[dict] = []
    if run["reflections"]:
        messages.append({
            "role": "system",
            "content": "Reflections from your earlier failed attempts at this question:\n"
            + "\n".join(f"- {r}" for r in run["reflections"]),
        })
    messages.append({"role": "user", "content": run["question"]})
    thought, answer, verdict, pending = "", None, None, None
    for kind, n, text in run["steps"]:
        text = text.strip()
        if kind == "Thought":
            thought = text
        elif kind == "Action":
            m = _ACTION.match(text)
            name, arg = (m.group(1), m.group(2)) if m else ("Invalid", text)
            if name == "Finish":
                answer = arg
                messages.append({"role": "assistant", "content": f"{thought}\nFinal answer: {arg}".strip()})
                pending = None
            else:
                call_id = f"call_{n}"
                key = "keyword" if name == "Lookup" else "query"
                messages.append({
                    "role": "assistant",
                    "content": thought,
                    "tool_calls": [{"id": call_id, "name": name, "args": {key: arg}}],
                })
                pending = (call_id, name)
        elif kind == "Observation":
            if text.startswith("Answer is "):
                verdict = text[len("Answer is "):].strip()
            elif pending:
                messages.append({"role": "tool", "tool_call_id": pending[0], "name": pending[1], "content": text})
                pending = None
    return messages, answer, verdict


def convert(data_dir: Path) -> list[dict]:
    # The upstream logger lists an agent that answered wrongly at its step limit under both
    # INCORRECT and HALTED; keep the first listing of each (variant, trial, question).
    episodes: dict[str, dict] = {}
    for variant, filename in SOURCES.items():
        text = (data_dir / filename).read_text(encoding="utf-8")
        for index, (trial, group, lines) in enumerate(_split_runs(text)):
            run = _parse_run(lines)
            messages, answer, verdict = _messages(run)
            success = group == "CORRECT"
            if group == "HALTED":
                feedback = f"Halted: ran out of steps without an answer. Expected: {run['gold']}"
            elif success:
                feedback = "Correct."
            else:
                feedback = f"Incorrect answer {answer!r}. Expected: {run['gold']}"
            qid = hashlib.sha1(run["question"].encode()).hexdigest()[:10]
            episode_id = f"hotpotqa-{variant}-t{trial}-{qid}"
            if episode_id in episodes:
                continue
            episodes[episode_id] = {
                "id": episode_id,
                "task": run["question"],
                "messages": messages,
                "final_answer": answer,
                "outcome": {"success": success, "score": 1.0 if success else 0.0, "feedback": feedback},
                "namespace": ["hotpotqa"],
                "thread_id": f"{variant}-t{trial}-{qid}",
                "created_at": (_EPOCH + timedelta(days=trial, seconds=index)).isoformat(),
                "metadata": {
                    "source": "noahshinn/reflexion hotpotqa_runs (MIT)",
                    "variant": variant,
                    "trial": trial,
                    "question_id": qid,
                    "gold_answer": run["gold"],
                    "halted": group == "HALTED",
                    "verdict": verdict,
                },
            }
    return list(episodes.values())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    episodes = convert(Path(argv[0]))
    out = Path(argv[1])
    payload = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in episodes)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(payload.encode("utf-8"))
    print(f"wrote {len(episodes)} episodes to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

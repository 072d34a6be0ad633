"""Synthetic logged traffic for `wb replay`: N conversations in the `openai` log format (the canary log's shape,
workbench/replay/conversations.py), seeded, from the repo's own data.

    python scripts/make_replay_logs.py OUT.jsonl [--n 500] [--seed 0] [--manifest OUT.json]
        [--pii K] [--secrets K] [--duplicates K] [--near-duplicates K]
        [--training-copies K --training-file evals/data/contacts_train.jsonl] [--malformed K]

The traffic: contact extraction requests (workbench.data.contacts' instruction, people, cities and its held-out
message templates, which no training row uses, so none overlaps the training rows), general questions (the judge demo's science questions, arithmetic and unit
conversions, answers computed), and tool use (weather, currency and order look-ups: a tool call, or a tool result
answered), logged from two models. The conversations are distinct, and no two are near duplicates by construction
(two contact requests on one template differ in at least three of first name, surname, age and city; questions
never repeat), so the only duplicates are the planted ones. Every contact request carries an email address (in the prompt and in the JSON
answer): scrubbing finds those too.

Planted, for tests of the input side: --pii K contact requests with a phone number and an email address added;
--secrets K with an API key (OpenAI-style or an AWS access key id); --duplicates K exact copies and
--near-duplicates K copies with a word added; --training-copies K rows of the training file logged as traffic;
--malformed K truncated lines (each holding a secret, to check that a bad line's content is never echoed). The
manifest counts what was written where it can be read: emails, phones and secrets in well-formed lines, and each
planted kind.
"""

import argparse
import json
import random
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.data import contacts

MODELS = ("acme-chat-v1", "acme-chat-v2")
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "convert_currency", "description": "Convert an amount between currencies.",
        "parameters": {"type": "object", "properties": {"amount": {"type": "number"}, "from": {"type": "string"},
                                                        "to": {"type": "string"}},
                       "required": ["amount", "from", "to"]}}},
    {"type": "function", "function": {
        "name": "lookup_order", "description": "Status of an order by its id.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}},
]
CURRENCIES = ["EUR", "USD", "GBP", "JPY", "CHF", "SEK"]
WEATHER = ["sunny", "cloudy", "raining", "windy", "snowing", "foggy"]
ORDER_STATES = ["shipped", "being packed", "delivered", "waiting for payment"]
UNITS = [("kilometers", "miles", 0.621371), ("kilograms", "pounds", 2.20462), ("liters", "gallons", 0.264172),
         ("meters", "feet", 3.28084)]
JUDGE_DEMO = Path(__file__).resolve().parents[1] / "evals" / "data" / "judge_demo.jsonl"


def _contact(rng: random.Random, model: str) -> tuple[list, dict, dict, str]:
    first, last = rng.choice(contacts.FIRST), rng.choice(contacts.LAST)
    record = {"name": f"{first} {last}", "age": rng.randint(18, 79), "city": rng.choice(contacts.CITIES),
              "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(contacts.DOMAINS)}"}
    template = rng.choice(contacts.TEST_TEMPLATES)
    messages = [{"role": "user", "content": f"{contacts.INSTRUCTION}\nMessage: {template.format(**record)}"}]
    if model == MODELS[0]:
        answer = json.dumps(record, ensure_ascii=False)
    else:
        answer = f"The contact is {record['name']}, aged {record['age']}, from {record['city']} ({record['email']})."
    return messages, {"role": "assistant", "content": answer}, record, template


def _general(rng: random.Random, questions: list[dict]) -> tuple[list, dict, int]:
    kind = rng.randrange(3)
    if kind == 0 and questions:
        q = questions.pop(rng.randrange(len(questions)))
        ask = q["prompt"].split(": ", 1)[-1]  # without the suite's shared "In one or two sentences:" lead-in
        return [{"role": "user", "content": ask[0].upper() + ask[1:]}], {"role": "assistant", "content": q["reference"]}, 0
    if kind == 1:
        a, b = rng.randint(12, 999), rng.randint(3, 99)
        op, sign, value = rng.choice([("times", "*", a * b), ("plus", "+", a + b), ("minus", "-", a - b)])
        return ([{"role": "user", "content": f"What is {a} {op} {b}?"}],
                {"role": "assistant", "content": f"{a} {sign} {b} = {value}."}, 0)
    unit, other, factor = rng.choice(UNITS)
    x = rng.randint(2, 400)
    return ([{"role": "user", "content": f"How many {other} are {x} {unit}? Round to one decimal."}],
            {"role": "assistant", "content": f"{x} {unit} is about {x * factor:.1f} {other}."}, 0)


def _tool_use(rng: random.Random, cities: list[str]) -> tuple[list, dict, int]:
    kind = rng.randrange(3)
    if kind == 0:
        city = rng.choice(cities)
        ask, name, args = f"What's the weather like in {city} right now?", "get_weather", {"city": city}
        result = {"city": city, "temperature_c": rng.randint(-5, 35), "sky": rng.choice(WEATHER)}
        final = f"It is {result['temperature_c']} degrees Celsius and {result['sky']} in {city}."
    elif kind == 1:
        amount, src, dst = rng.randint(5, 5000), *rng.sample(CURRENCIES, 2)
        ask, name, args = (f"How much is {amount} {src} in {dst}?", "convert_currency",
                           {"amount": amount, "from": src, "to": dst})
        rate = round(rng.uniform(0.5, 1.5), 4)
        result = {"amount": round(amount * rate, 2), "currency": dst, "rate": rate}
        final = f"{amount} {src} is {result['amount']} {dst} at a rate of {rate}."
    else:
        order = f"{rng.choice(string.ascii_uppercase)}-{rng.randint(10000, 99999)}"
        ask, name, args = f"Where is my order {order}?", "lookup_order", {"order_id": order}
        result = {"order_id": order, "status": rng.choice(ORDER_STATES)}
        final = f"Your order {order} is {result['status']}."
    call = {"id": f"call_{rng.randrange(16**8):08x}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}
    user = {"role": "user", "content": ask}
    if rng.random() < 0.5:  # the logged turn is the tool call
        return [user], {"role": "assistant", "content": None, "tool_calls": [call]}, 0
    return ([user, {"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)}],
            {"role": "assistant", "content": final}, 0)


def _record(i: int, messages: list, answer: dict, model: str, tools: list | None, rng: random.Random) -> dict:
    request = {"model": model, "messages": messages}
    if tools:
        request["tools"] = tools
    return {"id": f"log-{i:06d}", "time": f"2026-12-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "side": "baseline", "request": request,
            "response": {"id": f"chatcmpl-{i:06d}", "object": "chat.completion", "model": model,
                         "choices": [{"index": 0, "message": answer,
                                      "finish_reason": "tool_calls" if answer.get("tool_calls") else "stop"}]},
            "status": 200}


def _secret(rng: random.Random, k: int) -> str:
    alnum = string.ascii_letters + string.digits
    if k % 2:
        return "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))
    return "sk-" + "".join(rng.choice(alnum) for _ in range(48))


def _phone(rng: random.Random) -> str:
    return rng.choice([f"+1 415-555-01{rng.randint(10, 99)}", f"(212) 555-01{rng.randint(10, 99)}",
                       f"+44 20 7946 0{rng.randint(100, 999)}"])


def _email(rng: random.Random) -> str:
    return f"{rng.choice(contacts.FIRST).lower()}.{rng.choice(contacts.LAST).lower()}@{rng.choice(contacts.DOMAINS)}"


def _with_user_text(messages: list, extra: str) -> list:
    """A copy of the messages with `extra` appended to the first user turn."""
    out = [dict(m) for m in messages]
    first = next(m for m in out if m["role"] == "user")
    first["content"] = f"{first['content']} {extra}"
    return out


def generate(n: int = 500, seed: int = 0, *, pii: int = 0, secrets: int = 0, duplicates: int = 0,
             near_duplicates: int = 0, training_copies: int = 0, training_file: Path | None = None,
             malformed: int = 0) -> tuple[list[str], dict]:
    """(lines of the log, manifest). n counts the well-formed records, planted copies included."""
    rng = random.Random(seed)
    base_n = n - duplicates - near_duplicates - training_copies
    if base_n < max(pii + secrets, duplicates + near_duplicates, 1):
        raise SystemExit("make_replay_logs: --n is too small for what is planted")
    questions = [json.loads(line) for line in JUDGE_DEMO.read_text().splitlines() if line.strip()]
    cities = sorted(contacts.HELD_OUT_CITIES | {"Lisbon", "Osaka", "Boston"})
    base, seen = [], set()
    while len(base) < base_n:
        r = rng.random()
        if r < 0.4:
            model, tools, emails = rng.choice(MODELS), None, 2  # the address: in the prompt and in the answer
            messages, answer, record, template = _contact(rng, model)
            # Any two of (first name, surname, age, city) shared on one template make a near duplicate once the
            # address is scrubbed; such a request is drawn again.
            fields = (*record["name"].split(" "), record["age"], record["city"])
            pairs = {(template, i, j, fields[i], fields[j]) for i in range(4) for j in range(i + 1, 4)}
            if pairs & seen:
                continue
            seen.update(pairs)
            key = messages[0]["content"]
        elif r < 0.75:
            (messages, answer, emails), model, tools = _general(rng, questions), rng.choice(MODELS), None
            key = messages[0]["content"]
        else:
            (messages, answer, emails), model, tools = _tool_use(rng, cities), rng.choice(MODELS), TOOLS
            key = json.dumps(messages[0]["content"])
        if key in seen:
            continue
        seen.add(key)
        base.append({"messages": messages, "answer": answer, "model": model, "tools": tools, "emails": emails,
                     "phones": 0, "secrets": 0, "kind": "contacts" if r < 0.4 else "general" if r < 0.75 else "tools",
                     "fields": {(template, i, f) for i, f in enumerate(fields)} if r < 0.4 else set()})
    # Planted in contact requests: once scrubbed, the planted sentence is the same everywhere, and beside a short
    # question it would make near duplicates of its own.
    # Nor may two of them share a field on one template (with the sentence, one shared field is near enough).
    requests, taken = [], set()
    for b in rng.sample([b for b in base if b["kind"] == "contacts"], sum(b["kind"] == "contacts" for b in base)):
        if len(requests) < pii + secrets and not b["fields"] & taken:
            requests.append(b)
            taken |= b["fields"]
    if len(requests) < pii + secrets:
        raise SystemExit("make_replay_logs: not enough contact requests to plant PII and secrets in")
    for k, b in enumerate(requests):
        if k < pii:
            b["messages"] = _with_user_text(b["messages"], f"Call me at {_phone(rng)} or write to {_email(rng)}.")
            b["phones"], b["emails"] = 1, b["emails"] + 1
        else:
            b["messages"] = _with_user_text(b["messages"], f"My API key is {_secret(rng, k)} if you need it.")
            b["secrets"] = 1
    entries = list(base)
    for src in rng.sample(base, duplicates):
        entries.append(dict(src))
    contact_sources = [b for b in base if b["kind"] == "contacts"]
    for src in rng.sample(contact_sources, near_duplicates):
        entries.append(dict(src, messages=_with_user_text(src["messages"], "Thanks!")))
    if training_copies:
        rows = [json.loads(line) for line in Path(training_file).read_text().splitlines() if line.strip()]
        for row in rng.sample(rows, training_copies):
            entries.append({"messages": row["messages"], "answer": {"role": "assistant", "content": row["reference"]},
                            "model": rng.choice(MODELS), "tools": None, "emails": 2, "phones": 0, "secrets": 0,
                            "kind": "training copy"})
    rng.shuffle(entries)
    lines = [json.dumps(_record(i, e["messages"], e["answer"], e["model"], e["tools"], rng), ensure_ascii=False)
             for i, e in enumerate(entries)]
    for k in range(malformed):
        broken = _record(len(lines), [{"role": "user", "content": f"Here is my key {_secret(rng, k)}, use it."}],
                         {"role": "assistant", "content": "Thanks."}, MODELS[0], None, rng)
        text = json.dumps(broken)
        lines.insert(rng.randrange(len(lines) + 1), text[:len(text) // 2])
    manifest = {"seed": seed, "records": len(entries), "malformed": malformed,
                "emails": sum(e["emails"] for e in entries), "phones": sum(e["phones"] for e in entries),
                "secrets": sum(e["secrets"] for e in entries), "duplicates": duplicates,
                "near_duplicates": near_duplicates, "training_copies": training_copies,
                "models": {m: sum(e["model"] == m for e in entries) for m in MODELS},
                "with_tools": sum(bool(e["tools"]) for e in entries)}
    return lines, manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--manifest", type=Path)
    for flag in ("pii", "secrets", "duplicates", "near-duplicates", "training-copies", "malformed"):
        p.add_argument(f"--{flag}", type=int, default=0)
    p.add_argument("--training-file", type=Path,
                   default=Path(__file__).resolve().parents[1] / "evals" / "data" / "contacts_train.jsonl")
    a = p.parse_args(argv)
    lines, manifest = generate(a.n, a.seed, pii=a.pii, secrets=a.secrets, duplicates=a.duplicates,
                               near_duplicates=a.near_duplicates, training_copies=a.training_copies,
                               training_file=a.training_file, malformed=a.malformed)
    a.out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if a.manifest:
        a.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"{a.out}: {len(lines)} lines ({manifest['records']} records, {a.malformed} malformed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

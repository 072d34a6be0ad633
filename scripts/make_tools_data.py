"""The bundled tools data: a contacts assistant that calls functions, as a training set and a held-out suite.

    python scripts/make_tools_data.py [FOLDER]     # default evals/data: tools_train.jsonl, tools_test.jsonl

Seeded, so the committed files regenerate byte for byte. Training rows are OpenAI-shaped (`tools` on the row,
assistant `tool_calls`, `tool` results and the answer after them); test items carry the same `tools` and a
`reference` list of {"name", "arguments"} for the `tool_call` scorer ([] where no function fits). Both hold
single calls, a choice among the four functions, parallel calls (two people in one message) and requests no
function serves; test items use people, cities and phrasings training never shows (workbench.data.contacts'
held-out names and cities).
"""

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.data.contacts import CITIES, DOMAINS, FIRST, HELD_OUT_CITIES, HELD_OUT_FIRST, LAST

SYSTEM = "You manage the user's address book. Call a function when one fits the request; otherwise just answer."


def _function(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


TOOLS = [
    _function("add_contact", "Add a person to the address book.",
              {"name": {"type": "string", "description": "Full name"},
               "age": {"type": "integer", "description": "Age in years"},
               "city": {"type": "string"}, "email": {"type": "string"}}, ["name", "email"]),
    _function("find_contact", "Look a person up by name.", {"name": {"type": "string"}}, ["name"]),
    _function("delete_contact", "Remove a person from the address book.", {"name": {"type": "string"}}, ["name"]),
    _function("send_email", "Send an email to a contact.",
              {"to": {"type": "string", "description": "The recipient's email address"},
               "subject": {"type": "string"},
               "priority": {"type": "string", "enum": ["low", "normal", "high"]}}, ["to", "subject"]),
]

TRAIN_PHRASES = {
    "add_contact": ["Please save {name}, {age}, from {city}, email {email}.",
                    "Add {name} ({email}) to my contacts - {age} years old, lives in {city}.",
                    "New contact: {name}, {age}, {city}, {email}."],
    "find_contact": ["What do I have on file for {name}?", "Look up {name} for me.", "Find {name} in my contacts."],
    "delete_contact": ["Remove {name} from my address book.", "Delete the contact {name}, please."],
    "send_email": ["Email {email} with the subject \"{subject}\".",
                   "Send a {priority} priority email to {email} titled \"{subject}\"."],
    "parallel": ["Add {name} ({email}) and {name2} ({email2}) to my contacts.",
                 "Look up both {name} and {name2}."],
}
TEST_PHRASES = {
    "add_contact": ["Could you store {name} in the book? {age} y/o, {city}, reachable at {email}."],
    "find_contact": ["Do I know someone called {name}? Check the book."],
    "delete_contact": ["{name} moved away - take them out of my contacts."],
    "send_email": ["Write to {email}, subject \"{subject}\", {priority} priority."],
    "parallel": ["Save {name} <{email}> and {name2} <{email2}> as contacts.", "Pull up {name} and {name2}."],
}
NO_CALL_TRAIN = [("What's a good way to organise an address book?",
                  "Group people by how you know them, and keep one entry per person with a current email."),
                 ("Thanks, that's all for today.", "You're welcome!"),
                 ("How many days are in a leap year?", "366."),
                 ("Tell me a fun fact about {city}.", "I can only manage your contacts; I don't have facts about cities.")]
NO_CALL_TEST = ["What time zone is {city} in?", "Can you recommend a good book?", "Say hello in French."]
SUBJECTS = ["Dinner on Friday", "Project update", "Happy birthday", "Invoice", "Meeting notes", "Trip plans"]


def _person(rng: random.Random, first_names: list[str], cities: list[str]) -> dict:
    first, last = rng.choice(first_names), rng.choice(LAST)
    return {"name": f"{first} {last}", "age": rng.randint(18, 79), "city": rng.choice(cities),
            "email": f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"}


def _calls(kind: str, p: dict, q: dict, fields: dict, phrase: str) -> list[dict]:
    if kind == "add_contact":
        return [{"name": "add_contact", "arguments": {k: p[k] for k in ("name", "age", "city", "email")}}]
    if kind in ("find_contact", "delete_contact"):
        return [{"name": kind, "arguments": {"name": p["name"]}}]
    if kind == "send_email":
        args = {"to": p["email"], "subject": fields["subject"]}
        return [{"name": "send_email", "arguments": args | ({"priority": fields["priority"]}
                                                            if "{priority}" in phrase else {})}]
    if "{email}" in phrase:  # parallel adds
        return [{"name": "add_contact", "arguments": {"name": x["name"], "email": x["email"]}} for x in (p, q)]
    return [{"name": "find_contact", "arguments": {"name": x["name"]}} for x in (p, q)]


def _example(rng: random.Random, phrases: dict, no_call: list, first_names: list[str], cities: list[str]):
    """(user text, calls: [] for none, the plain answer where no function fits)."""
    kinds = [*phrases, "none"]
    kind = rng.choice(kinds)
    p, q = _person(rng, first_names, cities), _person(rng, first_names, cities)
    fields = {"subject": rng.choice(SUBJECTS), "priority": rng.choice(["low", "normal", "high"])}
    if kind == "none":
        pick = rng.choice(no_call)
        text, answer = pick if isinstance(pick, tuple) else (pick, None)
        return text.format(city=p["city"]), [], answer
    phrase = rng.choice(phrases[kind])
    text = phrase.format(**p, **fields, name2=q["name"], email2=q["email"])
    return text, _calls(kind, p, q, fields, phrase), None


def _result(call: dict) -> dict:
    """A plausible function result, for rows that go on to answer after it."""
    if call["name"] == "find_contact":
        return {"found": True, "name": call["arguments"]["name"]}
    return {"ok": True}


def train_row(rng: random.Random) -> dict:
    first_names = [f for f in FIRST if f not in HELD_OUT_FIRST]
    cities = [c for c in CITIES if c not in HELD_OUT_CITIES]
    text, calls, answer = _example(rng, TRAIN_PHRASES, NO_CALL_TRAIN, first_names, cities)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    if not calls:
        return {"tools": TOOLS, "messages": [*messages, {"role": "assistant", "content": answer}]}
    messages.append({"role": "assistant", "content": "",
                     "tool_calls": [{"type": "function", "function": c} for c in calls]})
    if rng.random() < 0.25:  # the turn after the results: a short confirmation
        messages += [{"role": "tool", "content": json.dumps(_result(c))} for c in calls]
        messages.append({"role": "assistant", "content": "Done."})
    return {"tools": TOOLS, "messages": messages}


def test_item(rng: random.Random, i: int) -> dict:
    text, calls, _ = _example(rng, TEST_PHRASES, NO_CALL_TEST, sorted(HELD_OUT_FIRST), sorted(HELD_OUT_CITIES))
    return {"id": f"tools-{i:03d}", "tools": TOOLS,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
            "reference": calls, "tags": [calls[0]["name"] if len(calls) == 1 else "parallel" if calls else "none"]}


def build(n_train: int = 320, n_test: int = 60, seed: int = 25) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    return [train_row(rng) for _ in range(n_train)], [test_item(rng, i) for i in range(n_test)]


def write(folder: Path) -> list[Path]:
    train, test = build()
    paths = []
    for name, rows in (("tools_train.jsonl", train), ("tools_test.jsonl", test)):
        path = folder / name
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "evals" / "data"):
        print(p)

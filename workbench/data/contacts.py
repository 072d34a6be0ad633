"""The demo task: extract a contact record from a short message as one line of strict JSON.

A small instruct model answers in prose or loose JSON; a LoRA fine-tune learns the exact format.
The data is synthetic and deterministic (seeded), so `python -m workbench.data.contacts evals/data`
regenerates the committed files byte for byte. Test items use people, cities and message
templates that never appear in training.
"""

import json
import random
import sys
from pathlib import Path

INSTRUCTION = 'Give the contact in this message as one-line JSON with keys "name", "age", "city", "email".'

FIRST = ["Maria", "James", "Aisha", "Chen", "Lucas", "Priya", "Olga", "Tom", "Fatima", "Diego", "Yuki", "Emma",
         "Noah", "Sofia", "Liam", "Amara", "Jonas", "Elena", "Omar", "Hana", "Mateo", "Ingrid", "Ravi", "Chloe",
         "Kofi", "Lena", "Pablo", "Mei", "Arjun", "Zara", "Felix", "Nadia", "Hugo", "Leila", "Sven", "Rosa"]
LAST = ["Lopez", "Smith", "Khan", "Wei", "Martin", "Patel", "Ivanova", "Baker", "Haddad", "Alvarez", "Tanaka",
        "Weber", "Okafor", "Rossi", "Murphy", "Nowak", "Berg", "Silva", "Dubois", "Kim", "Costa", "Larsen",
        "Mensah", "Novak", "Schmidt", "Moreau", "Sato", "Reyes", "Fischer", "Ali"]
CITIES = ["Lisbon", "Boston", "Karachi", "Shanghai", "Lyon", "Mumbai", "Kazan", "Leeds", "Beirut", "Bogota",
          "Osaka", "Munich", "Lagos", "Turin", "Dublin", "Krakow", "Bergen", "Recife", "Nantes", "Busan",
          "Porto", "Aarhus", "Accra", "Brno", "Hamburg", "Lille", "Sendai", "Cebu", "Leipzig", "Dhaka"]
DOMAINS = ["example.org", "mail.example.com", "example.net", "corp.example", "post.example.io"]

TEMPLATES = [
    "Hi, I'm {name}, {age}, writing from {city}. Reach me at {email}.",
    "Hello! My name is {name}. I am {age} years old and live in {city}. Email: {email}",
    "{name} here ({age}), based in {city} - drop a line to {email} anytime.",
    "New signup: {name}, age {age}, city {city}, contact {email}.",
    "This is {name} from {city}. I turned {age} last month. You can email me at {email}.",
    "Please add {name} to the list. They are {age}, live in {city} and use {email}.",
    "Greetings from {city}! {name} ({age} y/o). Best address: {email}",
    "Contact card -- {name} / {age} / {city} / {email}",
    "My friend {name} lives in {city}, is {age}, and can be reached at {email}.",
    "Applicant {name} ({email}) is {age} and currently resides in {city}.",
]
# Held out: templates, first names and cities the model never trains on.
TEST_TEMPLATES = [
    "Quick note: {name}, {age} years, from {city}; write to {email} please.",
    "Registered today: {name} of {city}, {age}, email {email}.",
]
HELD_OUT_FIRST = {"Ingrid", "Ravi", "Chloe", "Kofi", "Lena", "Pablo"}
HELD_OUT_CITIES = {"Porto", "Aarhus", "Accra", "Brno", "Hamburg", "Lille"}


def _record(rng: random.Random, first_names: list[str], cities: list[str]) -> dict:
    first, last = rng.choice(first_names), rng.choice(LAST)
    email = f"{first.lower()}.{last.lower()}{rng.choice(['', str(rng.randint(1, 99))])}@{rng.choice(DOMAINS)}"
    return {"name": f"{first} {last}", "age": rng.randint(18, 79), "city": rng.choice(cities), "email": email}


def _item(record: dict, template: str, item_id: str) -> dict:
    message = template.format(**record)
    return {
        "id": item_id,
        "messages": [{"role": "user", "content": f"{INSTRUCTION}\nMessage: {message}"}],
        "reference": json.dumps(record, ensure_ascii=False),
    }


def build(n_train: int = 256, n_test: int = 80, seed: int = 7) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train_first = [f for f in FIRST if f not in HELD_OUT_FIRST]
    train_cities = [c for c in CITIES if c not in HELD_OUT_CITIES]
    train = [_item(_record(rng, train_first, train_cities), rng.choice(TEMPLATES), f"train-{i:04d}")
             for i in range(n_train)]
    test = []
    for i in range(n_test):
        # Half the test set uses held-out templates; all of it uses held-out first names and cities.
        template = rng.choice(TEST_TEMPLATES if i % 2 else TEMPLATES)
        record = _record(rng, sorted(HELD_OUT_FIRST), sorted(HELD_OUT_CITIES))
        test.append(_item(record, template, f"test-{i:04d}"))
    return train, test


def _plausibly_wrong(record: dict, rng: random.Random) -> str:
    """An answer a small model gives before it learns the format: prose, fenced JSON, a field dropped or wrong."""
    kind = rng.randrange(4)
    if kind == 0:
        return f"The contact is {record['name']}, aged {record['age']}, from {record['city']} ({record['email']})."
    if kind == 1:
        return "```json\n" + json.dumps(record, indent=2, ensure_ascii=False) + "\n```"
    if kind == 2:
        return json.dumps({k: v for k, v in record.items() if k != "email"}, ensure_ascii=False)
    wrong = dict(record, age=record["age"] + rng.choice([-10, -1, 1, 10]),
                 city=rng.choice([c for c in CITIES if c not in HELD_OUT_CITIES and c != record["city"]]))
    return json.dumps(wrong, ensure_ascii=False)


def preference_rows(train: list[dict], n: int = 64, seed: int = 11) -> list[dict]:
    """Preference pairs on training items: chosen is the reference answer, rejected a plausibly wrong one."""
    rng = random.Random(seed)
    return [{"id": item["id"], "prompt": item["messages"],
             "chosen": [{"role": "assistant", "content": item["reference"]}],
             "rejected": [{"role": "assistant", "content": _plausibly_wrong(json.loads(item["reference"]), rng)}]}
            for item in train[:n]]


def write(folder: Path) -> list[Path]:
    train, test = build()
    paths = []
    files = (("contacts_train.jsonl", train), ("contacts_test.jsonl", test),
             ("contacts_preference.jsonl", preference_rows(train)))
    for name, rows in files:
        path = folder / name
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "evals/data")):
        print(p)

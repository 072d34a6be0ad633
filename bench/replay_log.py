"""A synthetic production log for `wb replay`, in the canary's format (OpenAI chat-completions request/response
pairs, one exchange per line, as workbench/replay/conversations.py describes): the demo's contact-extraction
requests (held-out names, cities and templates of workbench.data.contacts, so none is a training row) answered by a
"production model" that is right most of the time and otherwise gives the plausibly wrong answers the demo's
preference data uses, plus weather questions answered by a tool call against a logged `tools` schema.

    python bench/replay_log.py /tmp/prod.jsonl --n 500 --seed 3
    wb replay /tmp/prod.jsonl --candidate wb-out/demo-after/adapter --baseline default --batch 32 --json

Deterministic for a seed; the same seed writes the same bytes.
"""

import argparse
import json
import random
from pathlib import Path

from workbench.data.contacts import HELD_OUT_CITIES, build, preference_rows

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "required": ["city"], "additionalProperties": False,
                   "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}}}}}
WEATHER_ASKS = ["What's the weather like in {city} right now?", "Is it raining in {city}?",
                "Should I bring a coat to {city} today? Check the weather.", "Temperature in {city} in {unit}, please."]


def records(n: int, seed: int, wrong_share: float, tool_share: float) -> list[dict]:
    rng = random.Random(seed)
    n_tools = round(n * tool_share)
    _, contacts = build(n_train=0, n_test=n - n_tools, seed=seed)
    wrong = {row["id"]: row["rejected"][0]["content"] for row in preference_rows(contacts, n=len(contacts), seed=seed)}
    out = []
    for item in contacts:
        answer = wrong[item["id"]] if rng.random() < wrong_share else item["reference"]
        out.append(_exchange(item["messages"], {"role": "assistant", "content": answer}, None))
    for _ in range(n_tools):
        city, unit = rng.choice(sorted(HELD_OUT_CITIES)), rng.choice(["C", "F"])
        ask = rng.choice(WEATHER_ASKS).format(city=city, unit=unit)
        args = {"city": city, **({"unit": unit} if "{unit}" in ask or rng.random() < 0.5 else {})}
        call = {"id": f"call_{rng.getrandbits(32):08x}", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps(args)}}
        out.append(_exchange([{"role": "user", "content": ask}],
                             {"role": "assistant", "content": None, "tool_calls": [call]}, [WEATHER_TOOL]))
    rng.shuffle(out)
    for i, rec in enumerate(out):
        rec["id"] = f"synthetic-{seed}-{i:05d}"
        rec["user"] = f"user-{rng.randrange(max(1, n // 5)):04d}"
    return out


def _exchange(messages: list[dict], answer: dict, tools: list[dict] | None) -> dict:
    request = {"model": "prod-model", "messages": messages, **({"tools": tools} if tools else {})}
    return {"id": None, "side": "baseline", "user": None, "request": request,
            "response": {"object": "chat.completion", "model": "prod-model",
                         "choices": [{"index": 0, "message": answer,
                                      "finish_reason": "tool_calls" if answer.get("tool_calls") else "stop"}]},
            "error": None, "status": 200}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--wrong-share", type=float, default=0.3, help="logged answers that are plausibly wrong")
    parser.add_argument("--tool-share", type=float, default=0.1, help="weather questions answered by a tool call")
    args = parser.parse_args()
    rows = records(args.n, args.seed, args.wrong_share, args.tool_share)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} exchanges -> {args.out}")


if __name__ == "__main__":
    main()

"""Which side answers a request: the conversation's key (the `X-WB-User` header, else the body's `user`, else a
hash of the first user message), hashed to a point in [0, 1) that sends it to the candidate when below the fraction:
the same user lands on the same side on every request and after a restart. And which sides are in rotation: a side
that fails `max_failures` times in a row is taken out for `cooldown_s`, then tried again by the next request."""

import hashlib
import json
import time
from dataclasses import dataclass, field

USER_HEADER = "x-wb-user"
BASELINE, CANDIDATE = "baseline", "candidate"


def conversation_key(headers, body: dict) -> str:
    """The key one user's requests share: the X-WB-User header, else the body's `user`, else `msg:` and a hash of
    the first user message (a conversation re-sent with more turns keeps its first message)."""
    header = headers.get(USER_HEADER)
    if header:
        return header
    user = body.get("user")
    if isinstance(user, str) and user:
        return user
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    first = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    text = json.dumps(first, sort_keys=True, ensure_ascii=False)
    return "msg:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def key_point(key: str) -> float:
    """The key's place in [0, 1), uniform over keys (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2 ** 64


def routed_side(key: str, fraction: float) -> str:
    return CANDIDATE if key_point(key) < fraction else BASELINE


@dataclass
class SideHealth:
    """Consecutive failures of one side, and whether it is out of rotation."""

    name: str
    max_failures: int
    cooldown_s: float
    failures_in_a_row: int = 0
    out_until: float = 0.0
    counts: dict = field(default_factory=lambda: {"requests": 0, "ok": 0, "errors": 0, "taken_out": 0})

    def in_rotation(self) -> bool:
        return time.monotonic() >= self.out_until

    def succeeded(self) -> bool:
        """Count a success; True when the side was out of rotation (or on probation) and is back."""
        self.counts["requests"] += 1
        self.counts["ok"] += 1
        back = self.failures_in_a_row >= self.max_failures
        self.failures_in_a_row = 0
        self.out_until = 0.0
        return back

    def failed(self) -> bool:
        """Count a failure; True when this one takes the side out of rotation."""
        self.counts["requests"] += 1
        self.counts["errors"] += 1
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.max_failures:
            self.out_until = time.monotonic() + self.cooldown_s
            self.counts["taken_out"] += 1
            return True
        return False

    def state(self) -> dict:
        return {"in_rotation": self.in_rotation(), "failures_in_a_row": self.failures_in_a_row, **self.counts}

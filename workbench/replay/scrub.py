"""Scrubbing logged traffic before anything else reads it: credentials by detect-secrets' plugins, then personal
data by Presidio's pattern recognizers; each span found becomes a placeholder naming its kind (`<EMAIL_ADDRESS>`,
`<AWS_ACCESS_KEY>`), and what was scrubbed is counted per kind.

Presidio's AnalyzerEngine runs on its NoOpNlpEngine, which loads no model: the recognizers used here are regular
expressions with checksums (phonenumbers for phone numbers), so no spaCy model is loaded or downloaded. Recognizers that need
a model (PERSON, LOCATION, ...) are therefore not run: names are not scrubbed. Presidio's email recognizer checks
the domain against the public suffix list (tldextract, which fetches it over the network); here every address its
pattern matches is scrubbed, since an internal domain (corp.example, mail.internal) is personal data all the same.
Credentials come first, so that a key's digits are never half-taken for a phone number.
"""

import re
from collections import Counter
from dataclasses import dataclass, field, replace

from workbench.replay.conversations import Conversation
from workbench.system.extras import require

PII_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE", "US_SSN")
# Presidio's pattern scores without context words (no NLP engine): a bare nine-digit number scores 0.05 as an
# SSN. Spans below this are noise, not personal data (phone numbers score 0.4, emails and valid cards 1.0).
MIN_SCORE = 0.3
# phonenumbers takes short numbers for valid in some regions ("164.0" in a sentence): a phone number, area code
# included, has at least seven digits.
MIN_PHONE_DIGITS = 7
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.~]")
_PEM_END = re.compile(r"-----END[ A-Z0-9]*-----")


def placeholder(kind: str) -> str:
    """`<EMAIL_ADDRESS>`, `<AWS_ACCESS_KEY>`: what a scrubbed span is replaced with."""
    return "<" + re.sub(r"[^A-Z0-9]+", "_", kind.upper()).strip("_") + ">"


@dataclass
class Scrubbed:
    """What scrubbing found, per kind: {"EMAIL_ADDRESS": 3, ...} for personal data, {"AWS_ACCESS_KEY": 1} for
    credentials."""

    pii: Counter = field(default_factory=Counter)
    secrets: Counter = field(default_factory=Counter)


class Scrubber:
    """Built once per log (Presidio's recognizers compile their patterns); `text()` and `conversation()` scrub and
    count into `found`."""

    def __init__(self):
        require("presidio_analyzer", "Scrubbing personal data from logs", "replay")
        require("detect_secrets", "Scrubbing credentials from logs", "replay")
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            UsSsnRecognizer,
        )

        class AnyDomainEmailRecognizer(EmailRecognizer):
            def validate_result(self, pattern_text: str) -> bool:
                return True

        registry = RecognizerRegistry([AnyDomainEmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(),
                                       IpRecognizer(), IbanRecognizer(), UsSsnRecognizer()])
        self._analyzer = AnalyzerEngine(registry=registry, default_score_threshold=MIN_SCORE,
                                        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]))
        self.found = Scrubbed()

    # ---- one string ----------------------------------------------------------------------------------------

    def text(self, text: str) -> str:
        if not text or not text.strip():
            return text
        text = self._replace(text, self._secret_spans(text), self.found.secrets)
        return self._replace(text, self._pii_spans(text), self.found.pii)

    @staticmethod
    def _replace(text: str, spans: list[tuple[int, int, str]], counts: Counter) -> str:
        for start, end, kind in sorted(spans, reverse=True):
            text = text[:start] + placeholder(kind) + text[end:]
            counts[placeholder(kind)[1:-1]] += 1
        return text

    def _pii_spans(self, text: str) -> list[tuple[int, int, str]]:
        results = [r for r in self._analyzer.analyze(text, language="en", entities=list(PII_ENTITIES))
                   if r.entity_type != "PHONE_NUMBER" or sum(map(str.isdigit, text[r.start:r.end])) >= MIN_PHONE_DIGITS]
        # The analyzer drops a span inside another of its kind, not overlaps of different kinds (an SSN that also
        # parses as a phone number): the higher score, then the longer span, wins.
        return _non_overlapping([(r.start, r.end, r.entity_type, (r.score, r.end - r.start)) for r in results])

    def _secret_spans(self, text: str) -> list[tuple[int, int, str]]:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
        from detect_secrets.settings import default_settings, get_plugins

        candidates = []
        with default_settings():
            plugins = {p.secret_type: p for p in get_plugins()}
            offset = 0
            for line in text.split("\n"):
                for secret in scan_line(line):
                    plugin, value = plugins.get(secret.type), secret.secret_value or ""
                    # An ad hoc scan yields every entropy candidate and leaves the limit to the caller (as
                    # `detect-secrets scan --string` does): apply the plugin's own limit here.
                    entropy = isinstance(plugin, HighEntropyStringsPlugin)
                    if not value or (entropy and plugin.calculate_shannon_entropy(value) <= plugin.entropy_limit):
                        continue
                    for m in re.finditer(re.escape(value), line):
                        start, end = _token_around(line, m.start(), m.end())
                        if secret.type == "Private Key":
                            dashes = line.rfind("-----", 0, m.start())
                            start = dashes if dashes >= 0 else start
                            pem_end = _PEM_END.search(text, offset + end)
                            end = (pem_end.end() if pem_end else len(text)) - offset
                        # A named credential (AWS key, JWT) outranks a high-entropy string over the same span.
                        candidates.append((offset + start, offset + end, secret.type, (0 if entropy else 1, end - start)))
                offset += len(line) + 1
        return _non_overlapping(candidates)

    # ---- a conversation -----------------------------------------------------------------------------------

    def value(self, value):
        """Every string in a message (content, text parts, tool-call arguments, a participant's name), scrubbed;
        roles, ids and function names kept. Tool-call arguments given as JSON text are scrubbed value by value and written back as JSON."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k in ("role", "id", "tool_call_id", "type") or (k == "name" and "arguments" in value):
                    out[k] = v  # a function's name is kept; a message's `name` (a participant) is scrubbed
                elif k == "arguments" and isinstance(v, str):
                    out[k] = self._json_text(v)
                else:
                    out[k] = self.value(v)
            return out
        return value

    def _json_text(self, text: str) -> str:
        import json

        try:
            parsed = json.loads(text)
        except ValueError:
            return self.text(text)
        return json.dumps(self.value(parsed), ensure_ascii=False)

    def conversation(self, convo: Conversation) -> Conversation:
        meta = dict(convo.meta)
        if "shadow_answer" in meta:
            meta["shadow_answer"] = self.value(meta["shadow_answer"])
        return replace(convo, messages=self.value(convo.messages),
                       logged_answer=None if convo.logged_answer is None else self.value(convo.logged_answer),
                       meta=meta)


def _token_around(line: str, start: int, end: int) -> tuple[int, int]:
    """A plugin may report part of a credential (GitHub's pattern captures only its prefix): widen to the whole
    token, without a sentence's final dot."""
    while start > 0 and _TOKEN.match(line[start - 1]):
        start -= 1
    while end < len(line) and _TOKEN.match(line[end]):
        end += 1
    while end > start + 1 and line[end - 1] == ".":
        end -= 1
    return start, end


def _non_overlapping(spans: list[tuple[int, int, str, tuple]]) -> list[tuple[int, int, str]]:
    """The best-ranked span of each overlapping set (rank: the 4th field, higher wins); overlapping losers that
    reach past the winner widen it, so no part of a found span survives."""
    kept: list[list] = []
    for start, end, kind, _ in sorted(spans, key=lambda s: s[3], reverse=True):
        for k in kept:
            if start < k[1] and end > k[0]:
                k[0], k[1] = min(k[0], start), max(k[1], end)
                break
        else:
            kept.append([start, end, kind])
    # Widening can make two kept spans overlap: merge them, keeping the first kind.
    merged: list[list] = []
    for k in sorted(kept):
        if merged and k[0] < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], k[1])
        else:
            merged.append(k)
    return [(s, e, kind) for s, e, kind in merged]

"""Rule-based urgency / anger signal, computed for every inbound message.

Each cue group counts once (its strongest matching rule); the score is the sum, clamped to 0..1.
Level: "high" at >= 0.7, "elevated" at >= 0.35, else "none".

| cue group           | weight | examples                                                        |
|---------------------|--------|-----------------------------------------------------------------|
| safety / health     | 0.70   | injured, hurt, fire, smoke, sparks, allergic reaction, unsafe   |
|                     |        | (alone => "high"; a negated hit like "nobody was hurt" is skipped)|
| legal threat        | 0.50   | lawyer, attorney, "sue you", court, small claims, ombudsman,    |
|                     |        | regulator, trading standards, chargeback, dispute with my bank  |
| leaving             | 0.35   | cancel my account/subscription/contract, switching to Acme,     |
|                     |        | closing my account, never again, last time I use                |
| repetition          | 0.35   | third time, 3rd time, for the fifth time (alone: "elevated")    |
|                     | 0.30   | still not, still waiting, keeps happening, every time, 5 times  |
|                     | 0.15   | plain "again"                                                   |
| long wait           | 0.20   | 2 weeks, 10 days, for weeks                                     |
| urgency words       | 0.30   | urgent, asap, immediately, right now, emergency, today!         |
| strong negative     | 0.25   | furious, unacceptable, ridiculous, scam, worst, useless, ...    |
|                     | +0.10  | two or more different strong words                              |
| profanity           | 0.30   | a small list incl. obfuscated f***, sh*t, and wtf / ffs         |
| shouting (caps)     | 0.25   | >= 60% upper-case over >= 8 letters, short acronyms ignored     |
| repeated punctuation| 0.15   | !!, ?!, !!!, ???                                                |
| de-escalation       | -0.30  | not urgent, no rush, no hurry, whenever you can                 |

Matching is case-insensitive on word boundaries ("sue" is not "issue"/"suede", "court" is not
"courtesy"). All patterns are bounded, so the cost is linear in the message length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["ELEVATED", "HIGH", "Urgency", "urgency"]

ELEVATED, HIGH = 0.35, 0.7


@dataclass(frozen=True, slots=True)
class Urgency:
    score: float                 # 0..1
    level: str                   # "none" | "elevated" | "high"
    reasons: tuple[str, ...]     # short human-readable cues, strongest groups first


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


# (pattern, weight, reason); reason None => the matched words themselves
_Rule = tuple[re.Pattern[str], float, str | None]

_SAFETY = _rx(r"\b(?:injur(?:ed|y|ies)|hurt|bleeding|burn(?:ed|t|s|ing)?|fire|on\s+fire|caught\s+fire"
              r"|smok(?:e|ing)|spark(?:s|ed|ing)?|explo(?:ded|des|ding|sion)|electric\s+shock"
              r"|allergic\s+reaction|food\s+poisoning|unsafe|not\s+safe|dangerous|hospital|choking)\b")
# a negator at most two words before the hit, in the same clause ("nobody was hurt", but not
# "it doesn't charge and caught fire", "it won't turn on, smoke everywhere", "can't believe it ...")
_NEGATOR = _rx(r"\b(?:not|no|nobody|never|without|\w*n't)[^\w,.;:!?]+"
               r"(?:(?!(?:and|but|or|so|then|because|believe)\b)\w+[^\w,.;:!?]+){0,2}$")

_GROUPS: tuple[tuple[str, tuple[_Rule, ...]], ...] = (
    ("legal", (
        (_rx(r"\b(?:lawyers?|attorneys?|solicitors?)\b"), 0.5, "mentions a lawyer"),
        (_rx(r"\b(?:su(?:e|ing)\s+(?:you|u|your|them|this|the)\b|(?:will|gonna|going\s+to|i'll|i\s+will)"
             r"\s+sue\b|\bsued\b)"), 0.5, "threatens to sue"),
        (_rx(r"\b(?:courts?|small\s+claims|legal\s+action)\b"), 0.5, "mentions court"),
        (_rx(r"\b(?:ombudsman|regulators?|trading\s+standards|better\s+business\s+bureau)\b"), 0.5,
         "mentions a regulator"),
        (_rx(r"\b(?:charge\s?backs?|dispute\s+(?:\w+\s+){0,3}with\s+my\s+(?:bank|card|credit\s+card))\b"),
         0.5, "threatens a chargeback"),
    )),
    ("leaving", (
        (_rx(r"\b(?:cancel(?:l?ing)?|terminat(?:e|ing))\s+(?:my|our|the)\s+"
             r"(?:account|subscription|contract|membership|plan|service)\b"), 0.35, "wants to cancel"),
        (_rx(r"\bclos(?:e|ing)\s+(?:my|our)\s+account\b"), 0.35, "closing the account"),
        (re.compile(r"\b(?i:switch(?:ing)?\s+to)\s+(?:[A-Z]|(?i:a\s+competitor|another\s+(?:provider|company)))"),
         0.35, "switching to a competitor"),
        (_rx(r"\b(?:never\s+again|last\s+time\s+i\s+(?:use|order|buy|shop)|taking\s+my\s+business\s+elsewhere)"),
         0.35, "says never again"),
    )),
    ("repetition", (
        (_rx(r"\b(?:second|third|fourth|fifth|sixth|tenth|umpteenth|hundredth|millionth|nth|[0-9]+(?:st|nd|rd|th))"
             r"\s+time\b"), 0.35, None),   # a repeat contact alone is "elevated"
        (_rx(r"\b(?:still\s+(?:not|no|nothing|waiting|haven't|hasn't|broken)|keeps?\s+happening"
             r"|every\s+(?:single\s+)?time|yet\s+again|once\s+again|over\s+and\s+over|how\s+many\s+times"
             r"|(?:[0-9]+|three|four|five|six|several|multiple|many)\s+times)\b"), 0.3, None),
        (_rx(r"(?<!never )\bagain\b"), 0.15, None),
    )),
    ("wait", (
        (_rx(r"\b(?:[0-9]{1,3}|two|three|four|five|six|several|a\s+few|for)\s+(?:days|weeks|months)\b"),
         0.2, None),
    )),
    ("urgent", (
        (_rx(r"\b(?:urgent(?:ly)?|asap|a\.s\.a\.p|immediately|right\s+(?:now|away)|emergency"
             r"|as\s+soon\s+as\s+possible)\b|\btoday\s*!"), 0.3, None),
    )),
    ("negative", (
        (_rx(r"\b(?:furious|disgust(?:ed|ing)|unacceptable|ridiculous|outrageous|scam(?:s|mers?)?|worst"
             r"|useless|pathetic|disgrace(?:ful)?|appalling|incompetent|livid)\b"), 0.25, None),
    )),
    ("profanity", (
        (_rx(r"\b(?:f+u+c+k+\w*|fck\w*|wtf|ffs|shit\w*|bullshit|crap(?:py)?|damn(?:ed)?|bastards?"
             r"|a(?:ss|rse)holes?|pissed|bloody\s+hell)\b"
             r"|\b(?:f[*#@$%]{2,3}k?|f[*#@$%]ck|fu[*#@$%]k|sh[*#@$%]t|s[*#@$%]{2,3}t?)(?!\w)"), 0.3,
         "profanity"),
    )),
)
_DEESCALATE = _rx(r"\b(?:(?:not|isn't|no)\s+(?:(?:that|very|too|super|really|an?)\s+)?"
                  r"(?:urgent|emergency|rush|hurry|urgency)|whenever\s+you\s+(?:can|get\s+a\s+chance|have\s+time))\b")
_PUNCT = re.compile(r"[!?！？]{2,}")
_WORD = re.compile(r"[^\W\d_]+")
_ACRONYMS = frozenset({"ASAP", "USPS", "FEDEX", "HTTP", "HTML", "NASA", "GMAIL", "IBAN", "SWIFT"})


_NONE = Urgency(0.0, "none", ())


def _screen_patterns() -> list[str]:
    """The cue patterns the screen looks for (see :func:`_screen`), each as written above."""
    patterns = [_SAFETY.pattern, _DEESCALATE.pattern]
    for _, rules in _GROUPS:
        for pattern, _, _ in rules:
            if not pattern.flags & re.I:
                patterns.append(r"\bswitch(?:ing)?\s+to\s")
            else:   # without a leading negative look-behind ("again", not after "never "): more, never less
                patterns.append(re.sub(r"^\(\?<![^()]*\)", "", pattern.pattern))
    return patterns


def _screen(patterns: list[str] | None = None) -> re.Pattern[str]:
    """Every cue pattern above as ONE case-sensitive alternation, searched in the lower-cased
    text: no match means no cue group, no safety hit, no de-escalation and no repeated
    punctuation, so only shouting can score.

    Exact for ASCII text, the only text it is used on: there, a pattern compiled with
    ``re.I`` (whose literals are lower case) matches a text exactly where the same pattern,
    case-sensitive, matches the lower-cased text, and \\w, \\s, \\b and the character classes
    do not depend on case. The one case-sensitive rule (``switching to`` + a capital) is
    screened by its case-free start, and "again" without its ``(?<!never )``: a screen may
    match more than the rules (the full scoring then decides), never less.

    Every rule starts with ``\\b`` and then a letter or a digit (tests/flows/test_urgency.py
    checks this on the parsed patterns), so the screen is ``(?:\\b(?=\\w)|(?=[!?！？]))`` once,
    then the rules without their ``\\b`` and the repeated punctuation: at a position that
    starts no word and no punctuation run the search moves on after one check instead of
    trying every rule (issue 20: 4-5 us instead of ~14 us a message, tests/flows/test_urgency.py
    compares both on every test text). One search instead of 17 with ``re.I``.
    """
    rules = []
    for p in _screen_patterns() if patterns is None else patterns:
        if not p.startswith(r"\b"):
            raise ValueError(f"an urgency rule that does not start with \\b: {p!r}")
        rules.append(p[2:])
    return re.compile(r"(?:\b(?=\w)|(?=[!?！？]))(?:" + "|".join(f"(?:{p})" for p in rules)
                      + "|" + _PUNCT.pattern + ")")


_SCREEN = _screen()


def urgency(text: str) -> Urgency:
    """Score one message; never raises."""
    if not isinstance(text, str) or not text.strip():
        return Urgency(0.0, "none", ())
    return _score(text)


@lru_cache(maxsize=4096)
def _score(text: str) -> Urgency:
    """:func:`urgency` of a non-empty text (~0.15 ms of regular expressions; a pure function of
    the text, so a repeated message is remembered; the result is immutable)."""
    text = text.replace("\u2019", "'")
    # shouting needs 4 or more capitals (5 of 8+ letters, or an all-caps word of 4+ letters)
    if text.isascii() and _SCREEN.search(text.lower()) is None and (
            sum(map(str.isupper, text)) < 4 or not _shouting(text)):
        return _NONE        # no cue at all (see _screen): what the scoring below gives
    return _full_score(text)


def _full_score(text: str) -> Urgency:
    """:func:`_score` of a text with the apostrophes made plain, every cue looked for."""
    score, reasons = 0.0, []

    calm = [m.span() for m in _DEESCALATE.finditer(text)]
    safety = next((m for m in _SAFETY.finditer(text)
                   if not _NEGATOR.search(text, max(0, m.start() - 40), m.start())), None)
    if safety:
        score += 0.7
        reasons.append(f"safety: {_words(safety.group(0))}")

    for name, rules in _GROUPS:
        best: tuple[float, int, str] | None = None   # (weight, position, reason)
        distinct: set[str] = set()
        for pattern, weight, reason in rules:
            for m in pattern.finditer(text):
                if any(s <= m.start() < e for s, e in calm):
                    continue  # "not urgent"
                distinct.add(m.group(0).lower())
                cand = (weight, -m.start(), reason or _words(m.group(0)))
                if best is None or cand > best:
                    best = cand
        if best:
            bonus = 0.1 if name == "negative" and len(distinct) > 1 else 0.0
            score += best[0] + bonus
            reasons.append(best[2])

    if _shouting(text):
        score += 0.25
        reasons.append("shouting (caps)")
    punct = _PUNCT.search(text)
    if punct:
        score += 0.15
        reasons.append(punct.group(0)[:5])
    if calm:
        score -= 0.3
        reasons.append(f"de-escalated ({_words(text[calm[0][0]:calm[0][1]])})")

    score = round(min(1.0, max(0.0, score)), 2)
    if safety:
        score = max(score, HIGH)
    level = "high" if score >= HIGH else "elevated" if score >= ELEVATED else "none"
    return Urgency(score, level, tuple(reasons))


def _words(s: str) -> str:
    return " ".join(s.lower().split())


def _shouting(text: str) -> bool:
    """>= 60% upper-case over >= 8 letters; all-caps words of <= 3 letters (UPS, DHL, OK, I) and
    known acronyms are ignored, unless the whole message is in capitals ("WHY IS MY BOX LATE")."""
    words = _WORD.findall(text)
    kept = [w for w in words if not (w.isupper() and (len(w) <= 3 or w in _ACRONYMS))]
    letters = sum(len(w) for w in kept)
    if letters >= 8 and sum(c.isupper() for w in kept for c in w) / letters >= 0.6:
        return True
    return (sum(len(w) for w in words) >= 8 and all(w.isupper() for w in words)
            and any(len(w) >= 4 and w not in _ACRONYMS for w in words))

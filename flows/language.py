"""Which language a conversation is held in (README "Languages").

Every customer message may change it, but only on clear evidence:

1. an explicit request switches at once and sticks for the conversation: "/lang es", "English
   please", "en español", "bahasa indonesia saja" (a short message made of a language's name and
   a few filler words; "the English manual arrived torn" is no request);
2. otherwise, unless the customer chose, the detector (lingua, restricted to the supported
   languages) may change it: only for a message with at least ``languages.min_letters`` letters
   once numbers, order ids, e-mail addresses and links are taken out, and only when it is at
   least ``languages.min_confidence`` sure. So "ok", "AB123456", "yes" or "C-1042" never flip it.
   Vietnamese is told by its letters, or typed without them by its words ("toi muon khieu nai",
   which the detector takes for French): it sets ``vi`` where the flows support it and is no
   evidence for another language where they do not (flows/nlu/multilingual.py ``vietnamese``);
3. the first messages, while nothing is known, start from the platform's hint (Telegram's
   ``from.language_code``, kept on the customer) when it is a supported language, else the
   default language.

lingua-language-detector (Apache-2.0) is used because it is maintained, offline, and built for
short texts: on the demo's languages a message costs about 0.1 ms after the first one.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .i18n import LanguageSettings

log = logging.getLogger(__name__)

#: What customers call each language, in English, in itself and in the demo's other languages.
LANGUAGE_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("english", "inglés", "ingles", "inggris", "bahasa inggris", "englisch", "anglais", "inglese",
           "engels", "tiếng anh", "tieng anh"),
    "es": ("spanish", "español", "espanol", "castellano", "spanyol", "bahasa spanyol", "spanisch", "espagnol",
           "spagnolo", "spaans", "espanhol"),
    "id": ("indonesian", "bahasa indonesia", "indonesia", "indonesio", "indonésio", "indonésien",
           "indonesisch", "indonesiano"),
    "pt": ("portuguese", "português", "portugues", "portugués", "portugis", "bahasa portugis"),
    "fr": ("french", "français", "francais", "francés", "frances", "prancis", "bahasa prancis", "französisch"),
    "de": ("german", "deutsch", "alemán", "aleman", "jerman", "bahasa jerman", "allemand"),
    "it": ("italian", "italiano", "italien", "italienisch", "italia", "bahasa italia"),
    "nl": ("dutch", "nederlands", "holandés", "belanda", "bahasa belanda", "niederländisch"),
    "vi": ("vietnamese", "tiếng việt", "tieng viet", "vietnamita", "vietnam", "bahasa vietnam"),
}
#: Words around a language's name in a request to switch: "in English please", "¿puedes hablar en
#: español?", "pakai bahasa indonesia saja ya".
FILLER = frozenset("""
    please pls plz can could would you we i in speak talk write reply answer switch change to the language
    use let's lets us only now ok okay yes do it thanks
    por favor puedes puede podemos hablar habla hable háblame hablame escribe escribir en el idioma cambiar
    cambia a al sólo solo mejor sí si vale gracias
    tolong bahasa bisa pakai pake gunakan dalam saja aja ya ganti ke mohon berbicara bicara boleh dong terima kasih
    bitte auf sprechen parlez en s'il vous plaît favore
""".split())
_LANG_CMD = re.compile(r"^/(?:lang|language|idioma|bahasa)(?:@\w+)?\s+([A-Za-z]{2})(?:[-_][A-Za-z]{2})?\s*$")
#: What letters() leaves out: a run of non-spaces with a digit or an "@" inside (from the run's
#: start: such a run matches there if anywhere), or a link from where it starts (also inside a
#: run). Each match runs to the end of its run. Written as "\S*\d\S*|\S+@\S+|https?://\S+|www\.\S+"
#: before issue 20, which tried the first two at every character of every word; the same matches
#: (tests/flows/test_language_checks.py compares both on many texts)
_NOT_WORDS = re.compile(r"(?<!\S)(?:[^\s\d]*\d\S*|\S+@\S+)|https?://\S+|www\.\S+", re.I)
MAX_REQUEST_WORDS = 7
_LETTER_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
#: LANGUAGE_NAMES as switch_request looks for them: " name " (whole words), longest first
_NAMES_LONGEST_FIRST = tuple((code, tuple(f" {n} " for n in sorted(names, key=len, reverse=True)))
                             for code, names in LANGUAGE_NAMES.items())
#: Every word of every name: a message with none of them names no language
_NAME_WORDS = frozenset(w for names in LANGUAGE_NAMES.values() for n in names for w in n.split())


def switch_request(text: str, supported: list[str]) -> str | None:
    """The supported language ``text`` asks to switch to, if it is such a request."""
    raw = (text or "").strip()
    m = _LANG_CMD.match(raw)
    if m:
        code = m.group(1).lower()
        return {"in": "id"}.get(code, code) if {"in": "id"}.get(code, code) in supported else None
    norm = " " + " ".join(_LETTER_WORD.findall(raw.lower())) + " "
    words = norm.split()
    if not words or len(words) > MAX_REQUEST_WORDS or _NAME_WORDS.isdisjoint(words):
        return None     # (a name is found only where each of its words is one of the message's)
    found: str | None = None
    rest = norm
    for code, names in _NAMES_LONGEST_FIRST:
        for name in names:
            if name in rest:
                if found is not None and found != code:
                    return None       # "english or spanish?": no request
                found = code
                rest = rest.replace(name, " ")
    if found is None or found not in supported:
        return None
    if all(w in FILLER for w in rest.split()):
        return found
    return None


def letters(text: str) -> int:
    """The letters of ``text`` that say something about its language: not those of numbers, order
    ids, references, e-mail addresses and links."""
    return sum(map(str.isalpha, _NOT_WORDS.sub(" ", text or "")))


@lru_cache(maxsize=8)
def _detector(codes: tuple[str, ...]) -> Any:
    from lingua import IsoCode639_1, LanguageDetectorBuilder   # imported only with several languages

    isos = []
    for c in codes:
        iso = getattr(IsoCode639_1, c.upper(), None)
        if iso is None:
            log.warning("language %r is not known to the detector; it is only reached by a switch", c)
        else:
            isos.append(iso)
    if len(isos) < 2:
        return None
    return LanguageDetectorBuilder.from_iso_codes_639_1(*isos).build()


_lock = threading.Lock()
# Set by the first detection for a message: from then on the detector's models stay loaded.
_serving = False


def release_models(det: Any) -> None:
    """Free the detector's models (lingua's high-accuracy n-grams, ~25 MB a language) unless a
    message has used them: training at start loads them to sort examples only, and freeing them
    before the classifiers are fitted keeps them out of the training's peak (issue 18: 150 intents
    x 10 examples, 9 languages: ~215 MB); the first message that needs them loads them again."""
    if _serving or det is None:
        return
    det.unload_language_models()
    trim_heap()


def trim_heap() -> None:
    """Ask glibc to give freed heap pages back to the system now. lingua frees with malloc, and
    loading its models leaves much freed heap behind: measured ~30 MB of the ~95 MB that loading
    three languages adds to the RSS (issue 20: idle RSS)."""
    from bot.heap import trim

    trim()


def serving() -> None:
    """A message is being detected: keep the models loaded from now on."""
    global _serving
    _serving = True


#: The words the detector reads: runs of letters (lingua splits a text into its letters' runs,
#: lowercased; digits, punctuation and spaces only separate them).
_DETECTOR_WORDS = re.compile(r"[^\W\d_]+")


def detector_text(text: str) -> str:
    """``text`` as the detector reads it: its lowercased letter runs, one space apart. The
    detector's answer for it is the one for ``text`` ("Where is order 1042?" and "where is order
    77" are both "where is order"), so messages that differ only in numbers, case or punctuation
    share one detection (tests/flows/test_languages.py checks the equivalence on the demo's
    texts with ids, numbers and punctuation added)."""
    return " ".join(_DETECTOR_WORDS.findall(text.lower()))


def detect(text: str, codes: tuple[str, ...]) -> tuple[str, float] | None:
    """The most likely of ``codes`` for ``text`` and the detector's confidence (0-1)."""
    return _detect(detector_text(text), tuple(sorted(codes)))


# The detector is a pure function of (text, languages) and costs ~0.1-0.2 ms a message: customers'
# repeated phrases ("hi", "thanks", "where is my order 1042") are remembered, at most DETECT_CACHE.
DETECT_CACHE = 4096


@lru_cache(maxsize=DETECT_CACHE)
def _detect(text: str, codes: tuple[str, ...]) -> tuple[str, float] | None:
    with _lock:          # the detector loads its models on first use
        det = _detector(codes)
    if det is None:
        return None
    serving()
    values = det.compute_language_confidence_values(text)
    if not values:
        return None
    top = values[0]
    return top.language.iso_code_639_1.name.lower(), float(top.value)


_vi: Any = None


def _vietnamese(text: str) -> bool:
    global _vi
    if _vi is None:     # imported on the first message that needs it, then kept (issue 20)
        from .nlu.multilingual import vietnamese as _vi   # its letters and unaccented words (issue 18)
    return _vi(text)


@dataclass(frozen=True, slots=True)
class Decision:
    language: str
    switched: bool = False      # the customer asked for it ("English please"): it sticks
    why: str = ""               # for the log: request, detected (0.97), platform, default, kept


class Languages:
    """Decides each message's conversation language from the flows' ``settings.languages``."""

    def __init__(self, settings: LanguageSettings) -> None:
        self.settings = settings
        self.codes = tuple(settings.languages)

    @property
    def several(self) -> bool:
        return len(self.codes) > 1

    def warm(self, *, background: bool = False) -> None:
        """Load the detector now (at start, not on the first customer's message); ``background``:
        in a thread, so that the bot is ready to answer before its models (~30 MB and 0.2-0.5 s a
        language) are loaded (issue 20); a message that needs them meanwhile waits for them."""
        if self.several and self.settings.detect:
            if background:
                threading.Thread(target=self.warm, name="language detector", daemon=True).start()
            else:
                detect("hello, this warms the detector up", self.codes)
                trim_heap()

    def decide(self, current: str | None, text: str, *, chosen: bool = False, hint: Any = None,
               button: bool = False) -> Decision:
        """The conversation's language after the customer's message ``text``.

        Args:
            current: the conversation's language so far (None: not known yet).
            chosen: the customer asked for ``current`` explicitly: only another request changes it.
            hint: the platform's language tag for the customer (Telegram ``language_code``).
            button: the message is a button press (its text is the bot's own title): no evidence.
        """
        s = self.settings
        if current not in self.codes:
            current = None      # a language no longer supported
        start = current or s.normalize(hint) or s.default
        why = "kept" if current else ("platform" if s.normalize(hint) else "default")
        if not self.several or button:
            return Decision(start, why=why)
        asked = switch_request(text, list(self.codes))
        if asked is not None:
            return Decision(asked, switched=True, why="request")
        if chosen and current:
            return Decision(current, why="chosen")
        if s.detect and letters(text) >= s.min_letters:
            if _vietnamese(text):
                # Vietnamese letters, or Vietnamese typed without them ("toi muon khieu nai"), which
                # the detector takes for French or Dutch: Vietnamese, or no evidence where it is
                # not supported
                return Decision("vi", why="detected (vietnamese words)") if "vi" in self.codes else Decision(start, why=why)
            found = detect(text, self.codes)
            if found is not None and found[1] >= s.min_confidence:
                return Decision(found[0], why=f"detected ({found[1]:.2f})")
        return Decision(start, why=why)

"""Texts in several languages (README "Languages").

Any text a flow shows the customer (``say``, ``ask``, ``invalid``, button and choice titles, the
handoff reason, the fallback and complaint-offer messages, canned replies) is either a plain string
(the default language) or a mapping by ISO 639-1 code::

    say:
      en: "We're open Monday to Friday."
      es: "Abrimos de lunes a viernes."
      id: "Kami buka Senin sampai Jumat."

:func:`pick` chooses the variant for a conversation's language: that language, else
``languages.fallback``, else ``languages.default``, else the first one given.

The messages omnibot's code writes itself (an agent joined, the request was resolved, ...) are in
:data:`SYSTEM_MESSAGES`, in English, Spanish and Indonesian; ``settings.messages`` in the flows
overrides or adds to them, in the same form.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .i18n_widget import WIDGET_MESSAGES, WIDGET_NAMES

#: A text as flows write it: a string, or a mapping of language code to string.
Text = Union[str, dict[str, str]]

LANG_CODE = re.compile(r"^[a-z]{2}$")


class LanguageSettings(BaseModel):
    """``settings.languages``: which languages the flows are written in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = Field("en", description="the language of plain-string texts, and of new conversations "
                         "until the customer's language is known")
    fallback: str | None = Field(None, description="used when a text lacks the conversation's language; "
                                 "default: the default language")
    supported: list[str] = Field(default_factory=list, description="languages the bot answers in "
                                 "(ISO 639-1 codes); default: only the default language")
    complete: bool = Field(True, description="omnibot validate reports a text missing in a supported "
                           "language; false: missing texts fall back silently")
    detect: bool = Field(True, description="detect the language of customer messages (lingua); false: "
                         "only the platform's hint and an explicit switch change it")
    min_letters: int = Field(10, ge=1, le=200, description="shorter messages (letters, not counting codes "
                             "and numbers) never change the language: 'ok', 'AB123456', 'yes'")
    min_confidence: float = Field(0.8, ge=0, le=1, description="the detector's confidence needed to "
                                  "change the language")

    @field_validator("default", "fallback")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v is not None and not LANG_CODE.match(v):
            raise ValueError(f"{v!r} is not a two-letter language code (en, es, id)")
        return v

    @field_validator("supported")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not isinstance(c, str) or not LANG_CODE.match(c)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a two-letter language code (en, es, id)")
        if len(set(v)) != len(v):
            raise ValueError("a language is listed twice")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "LanguageSettings":
        langs = self.languages
        for what, code in (("default", self.default), ("fallback", self.fallback)):
            if self.supported and code is not None and code not in langs:
                raise ValueError(f"{what} {code!r} is not in supported ({', '.join(langs)})")
        return self

    @property
    def languages(self) -> list[str]:
        """The supported languages, the default first when none are listed."""
        return list(self.supported) or [self.default]

    @property
    def fallback_language(self) -> str:
        return self.fallback or self.default

    def normalize(self, code: Any) -> str | None:
        """A platform's language tag (``es-MX``, ``pt_BR``, ``in``) as a supported code, else None."""
        if not isinstance(code, str) or not code.strip():
            return None
        base = re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0]
        base = {"in": "id", "iw": "he", "ji": "yi"}.get(base, base)    # Java's old codes
        return base if base in self.languages else None


def pick(text: Text | None, lang: str | None, langs: LanguageSettings | None = None) -> str:
    """The variant of ``text`` for ``lang`` (see the module doc); a plain string as it is."""
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    langs = langs or _DEFAULT_LANGS
    for code in (lang, langs.fallback_language, langs.default):
        if code and text.get(code):
            return text[code]
    return next((v for v in text.values() if v), "")


def variants(text: Text | None) -> list[tuple[str | None, str]]:
    """Every variant of ``text`` as ``(language, source)``; ``None`` for a plain string."""
    if text is None:
        return []
    if isinstance(text, str):
        return [(None, text)]
    return [(k, v) for k, v in text.items() if isinstance(v, str)]


def all_texts(text: Text | None) -> list[str]:
    """Every variant's string (to match a choice title written in any language)."""
    return [v for _, v in variants(text)]


_DEFAULT_LANGS = LanguageSettings()


def t3(en: str, es: str, id_: str) -> dict[str, str]:
    """A built-in text in English, Spanish and Indonesian."""
    return {"en": en, "es": es, "id": id_}


#: What omnibot's code writes to customers, by message id: jinja templates (the values they are
#: given are data). ``settings.messages`` in the flows overrides them (README "Languages").
SYSTEM_MESSAGES: dict[str, dict[str, str]] = {
    "agent_joined": t3("{{ agent }} from {{ team }} has joined the conversation.",
                       "{{ agent }}, del equipo de {{ team }}, se ha unido a la conversación.",
                       "{{ agent }} dari tim {{ team }} telah bergabung dalam percakapan."),
    "resolved": t3("{{ agent }} marked your request as resolved{% if result %}: {{ result }}{% else %}.{% endif %}"
                   " If there's anything else, just write here.",
                   "{{ agent }} ha marcado tu solicitud como resuelta{% if result %}: {{ result }}{% else %}.{% endif %}"
                   " Si necesitas algo más, escríbenos aquí.",
                   "{{ agent }} telah menandai permintaan Anda sebagai selesai{% if result %}: {{ result }}"
                   "{% else %}.{% endif %} Jika ada hal lain, silakan tulis di sini."),
    "handed_back": t3("You're back with our assistant. Is there anything else I can help with?",
                      "Vuelves a hablar con nuestro asistente. ¿Puedo ayudarte en algo más?",
                      "Anda kembali dengan asisten kami. Ada lagi yang bisa saya bantu?"),
    "transferred_team": t3("{{ agent }} is transferring you to our {{ team }} team, who can best help with this. "
                           "They see everything so far.",
                           "{{ agent }} te está pasando a nuestro equipo de {{ team }}, que es quien mejor puede "
                           "ayudarte con esto. Verán todo lo hablado hasta ahora.",
                           "{{ agent }} sedang meneruskan Anda ke tim {{ team }} kami, yang paling tepat membantu "
                           "hal ini. Mereka dapat melihat seluruh percakapan sejauh ini."),
    "transferred_agent": t3("{{ agent }} is transferring you to {{ to }} from {{ team }}, who can best help with "
                            "this. They see everything so far.",
                            "{{ agent }} te está pasando con {{ to }}, del equipo de {{ team }}, que es quien mejor "
                            "puede ayudarte con esto. Verá todo lo hablado hasta ahora.",
                            "{{ agent }} sedang meneruskan Anda ke {{ to }} dari tim {{ team }}, yang paling tepat "
                            "membantu hal ini. Dia dapat melihat seluruh percakapan sejauh ini."),
    "taken_over": t3("{{ agent }} from {{ team }} is taking over from {{ previous }} and will continue with you.",
                     "{{ agent }}, del equipo de {{ team }}, sustituye a {{ previous }} y seguirá contigo.",
                     "{{ agent }} dari tim {{ team }} menggantikan {{ previous }} dan akan melanjutkan dengan Anda."),
    "complaint_resolved": t3("{{ agent }} resolved your complaint {{ reference }}{% if result %}: {{ result }}"
                             "{% else %}.{% endif %}",
                             "{{ agent }} ha resuelto tu reclamación {{ reference }}{% if result %}: {{ result }}"
                             "{% else %}.{% endif %}",
                             "{{ agent }} telah menyelesaikan keluhan Anda {{ reference }}{% if result %}: "
                             "{{ result }}{% else %}.{% endif %}"),
    "language_switched": t3("Sure, let's continue in English.", "¡Claro! Seguimos en español.",
                            "Baik, kita lanjutkan dalam bahasa Indonesia."),
    "apology": t3("Sorry, something went wrong on our side while answering you. "
                  "Your message is saved and a person from our team will follow up.",
                  "Lo sentimos, algo ha fallado por nuestra parte al responderte. "
                  "Tu mensaje está guardado y una persona de nuestro equipo te contestará.",
                  "Maaf, terjadi kesalahan di pihak kami saat menjawab Anda. "
                  "Pesan Anda tersimpan dan seseorang dari tim kami akan menindaklanjutinya."),
    # a call: step could not reach the business's system (README "Calling your systems")
    "call_failed": t3("Sorry, I can't look that up right now.", "Lo siento, ahora mismo no puedo consultarlo.",
                      "Maaf, saya tidak bisa memeriksanya sekarang."),
    # the handoff reason when a question was not answered in max_attempts tries ("... because <this>")
    "couldnt_get": t3("I couldn't get your {{ label }}", "no he podido entender tu dato «{{ label }}»",
                      "saya tidak dapat memahami {{ label }} Anda"),
    "call_failed_reason": t3("I couldn't check it automatically", "no he podido comprobarlo automáticamente",
                             "saya tidak dapat memeriksanya secara otomatis"),
    # card data removed from a customer's message (README "Privacy"; once per conversation)
    "card_removed": t3("For your safety we removed your card number; we never need it here.",
                       "Por tu seguridad hemos borrado el número de tu tarjeta; aquí nunca lo necesitamos.",
                       "Demi keamanan Anda, nomor kartu Anda kami hapus; kami tidak pernah memerlukannya di sini."),
    # a public place (a Telegram group): the short public reply with the one-time link, and the word
    # for a link that no longer works (bot/public.py)
    "public_reply": t3("Sorry to hear that. So we can help without sharing your details here, please continue "
                       "with us in private: {{ link }}",
                       "Lamentamos lo ocurrido. Para ayudarte sin compartir tus datos aquí, sigue con nosotros "
                       "en privado: {{ link }}",
                       "Mohon maaf atas kejadian ini. Agar kami bisa membantu tanpa membagikan data Anda di sini, "
                       "silakan lanjutkan secara pribadi: {{ link }}"),
    "public_link_expired": t3("Sorry, this link doesn't work any more: links from our public replies work once, "
                              "for a limited time, and only for the person they were made for. Tell me here what "
                              "happened and I'll help.",
                              "Lo sentimos, este enlace ya no funciona: los enlaces de nuestras respuestas públicas "
                              "sirven una sola vez, durante un tiempo limitado y solo para la persona a la que iban "
                              "dirigidos. Cuéntame aquí qué ha pasado y te ayudo.",
                              "Maaf, tautan ini sudah tidak berlaku: tautan dari balasan publik kami hanya bisa "
                              "dipakai sekali, dalam waktu terbatas, dan hanya oleh orang yang dituju. Ceritakan di "
                              "sini apa yang terjadi dan saya akan membantu."),
    # the ticket_status action: "where is my complaint?" (handoff/tickets.py)
    "status_none": t3("I couldn't find any complaint for you.", "No he encontrado ninguna reclamación tuya.",
                      "Saya tidak menemukan keluhan atas nama Anda."),
    "status_not_found": t3("I couldn't find a complaint {{ reference }} under your name. Please check the number "
                           "in our messages, or ask \"my complaints\" to see yours.",
                           "No he encontrado ninguna reclamación {{ reference }} a tu nombre. Revisa el número en "
                           "nuestros mensajes, o pregunta «mis reclamaciones» para ver las tuyas.",
                           "Saya tidak menemukan keluhan {{ reference }} atas nama Anda. Periksa nomornya di pesan "
                           "kami, atau tanyakan \"keluhan saya\" untuk melihat keluhan Anda."),
    "status_no_open": t3("You have no open complaints with us.", "No tienes ninguna reclamación abierta con nosotros.",
                         "Anda tidak memiliki keluhan yang masih terbuka pada kami."),
    "status_last_resolved": t3("Your complaint {{ reference }} has been resolved. Anything else I can do?",
                               "Tu reclamación {{ reference }} ya está resuelta. ¿Puedo ayudarte en algo más?",
                               "Keluhan Anda {{ reference }} sudah diselesaikan. Ada lagi yang bisa saya bantu?"),
    "status_resolved": t3("Your complaint {{ reference }}{% if category %} about {{ category | lower }}{% endif %} was "
                          "resolved on {{ when }}.",
                          "Tu reclamación {{ reference }}{% if category %} sobre {{ category | lower }}{% endif %} se "
                          "resolvió el {{ when }}.",
                          "Keluhan Anda {{ reference }}{% if category %} tentang {{ category | lower }}{% endif %} telah "
                          "diselesaikan pada {{ when }}."),
    "status_open": t3("Your complaint {{ reference }}{% if category %} about {{ category | lower }}{% endif %}: "
                      "{% if owner %}{{ owner }} from our {{ team }} team is working on it{% else %}it is waiting "
                      "for our {{ team }} team{% endif %}. We aim to resolve it by {{ due }}.",
                      "Tu reclamación {{ reference }}{% if category %} sobre {{ category | lower }}{% endif %}: "
                      "{% if owner %}{{ owner }}, de nuestro equipo de {{ team }}, se está ocupando de ella"
                      "{% else %}está a la espera de nuestro equipo de {{ team }}{% endif %}. Queremos resolverla "
                      "antes del {{ due }}.",
                      "Keluhan Anda {{ reference }}{% if category %} tentang {{ category | lower }}{% endif %}: "
                      "{% if owner %}{{ owner }} dari tim {{ team }} kami sedang menanganinya{% else %}sedang "
                      "menunggu tim {{ team }} kami{% endif %}. Kami menargetkan selesai paling lambat {{ due }}."),
    "status_more": t3("(and {{ count }} more)", "(y {{ count }} más)", "(dan {{ count }} lainnya)"),
    # the link_with_code action: one customer across channels (bot/linking.py)
    "link_bad_format": t3("Please send the 6-digit code exactly as you got it, like: link 123456.",
                          "Envía el código de 6 cifras tal como lo recibiste, por ejemplo: link 123456.",
                          "Kirim kode 6 angka persis seperti yang Anda terima, contohnya: link 123456."),
    "link_too_many": t3("Too many wrong codes. Please wait a few minutes, then ask for a new one.",
                        "Demasiados códigos incorrectos. Espera unos minutos y pide uno nuevo.",
                        "Terlalu banyak kode yang salah. Tunggu beberapa menit, lalu minta kode baru."),
    "link_invalid": t3("That code isn't valid: codes work once, for 10 minutes. Ask for a new one with "
                       "\"link my accounts\" on your other channel.",
                       "Ese código no es válido: los códigos sirven una sola vez, durante 10 minutos. Pide uno "
                       "nuevo con «vincular mis cuentas» en tu otro canal.",
                       "Kode itu tidak berlaku: kode hanya bisa dipakai sekali, selama 10 menit. Minta kode baru "
                       "dengan \"tautkan akun saya\" di saluran Anda yang lain."),
    "link_done": t3("Done: your accounts are linked. Your history and complaints are available here too.",
                    "Listo: tus cuentas están vinculadas. Tu historial y tus reclamaciones también están "
                    "disponibles aquí.",
                    "Selesai: akun Anda sudah tertaut. Riwayat dan keluhan Anda juga tersedia di sini."),
    # channel chrome: an e-mail with choices, a WhatsApp list of choices
    "email_choices": t3("Reply with the number or the words of your choice.",
                        "Responde con el número o las palabras de tu elección.",
                        "Balas dengan nomor atau kata-kata pilihan Anda."),
    "list_button": t3("Choose", "Elegir", "Pilih"),
    "list_section": t3("Options", "Opciones", "Pilihan"),
    # a WhatsApp list or reply buttons need a text above them: this one when the choice has none
    "choose_prompt": t3("Please choose:", "Elige una opción:", "Silakan pilih:"),
    # an e-mail reply when the customer's mail had no subject to answer ("Re: <this>")
    "email_subject": t3("Your message", "Tu mensaje", "Pesan Anda"),
    # for the agents, not the customer: why the bot handed over (context agent_reason). Agents have
    # no language of their own: in settings.languages.default. Values are the flows' and the NLU's words.
    "why_asked": t3("asked for a person", "pidió hablar con una persona", "meminta berbicara dengan petugas"),
    "why_misunderstood": t3("asked for a person after {{ count }} misunderstood message{% if count != 1 %}s{% endif %}",
                            "pidió hablar con una persona tras {{ count }} mensaje{% if count != 1 %}s{% endif %} "
                            "no entendido{% if count != 1 %}s{% endif %}",
                            "meminta berbicara dengan petugas setelah {{ count }} pesan yang tidak dipahami"),
    "why_complaint": t3("complaint flow: {{ reason }}", "flujo de reclamación: {{ reason }}",
                        "alur keluhan: {{ reason }}"),
    "why_reopened": t3("says their complaint is not solved", "dice que su reclamación no está resuelta",
                       "mengatakan keluhannya belum selesai"),
    "why_rule": t3("rule: flow {{ flow }} hands over ({{ reason }})",
                   "regla: el flujo {{ flow }} pasa la conversación ({{ reason }})",
                   "aturan: alur {{ flow }} meneruskan percakapan ({{ reason }})"),
    "why_not_understood": t3("the bot could not understand their {{ label }} ({{ tries }} tries)",
                             "el bot no pudo entender su dato «{{ label }}» ({{ tries }} intentos)",
                             "bot tidak dapat memahami {{ label }} mereka ({{ tries }} percobaan)"),
    "why_call_failed": t3("the bot could not reach {{ call }} ({{ why }})",
                          "el bot no pudo consultar {{ call }} ({{ why }})",
                          "bot tidak dapat menghubungi {{ call }} ({{ why }})"),
    "why_urgency": t3("{{ level }} urgency{% if cues %} ({{ cues }}){% endif %}",
                      "urgencia {% if level == 'high' %}alta{% else %}elevada{% endif %}"
                      "{% if cues %} ({{ cues }}){% endif %}",
                      "urgensi {% if level == 'high' %}tinggi{% else %}meningkat{% endif %}"
                      "{% if cues %} ({{ cues }}){% endif %}"),
    "why_ticket": t3("complaint {{ reference }} ({{ category or 'no category' }}, {{ severity }})"
                     "{% if reopened %}: the customer says it is not solved{% endif %}",
                     "reclamación {{ reference }} ({{ category or 'sin categoría' }}, {{ severity }})"
                     "{% if reopened %}: el cliente dice que no está resuelta{% endif %}",
                     "keluhan {{ reference }} ({{ category or 'tanpa kategori' }}, {{ severity }})"
                     "{% if reopened %}: pelanggan mengatakan belum selesai{% endif %}"),
    "why_default": t3("handed over", "pasada a una persona", "diteruskan ke petugas"),
    # why a complaint ticket got its severity, department and priority (the ticket's "Why" on the desks,
    # handoff/tickets.py classify); severities and departments are config's words
    "why_flow_severity": t3("severity {{ severity }} from the flow", "gravedad {{ severity }} según el flujo",
                            "tingkat keparahan {{ severity }} dari alur"),
    "why_repeat": t3("repeat complaint ({{ count }} earlier about {{ category or 'this' }})",
                     "reclamación repetida ({{ count }} anterior{% if count != 1 %}es{% endif %} sobre "
                     "{{ category or 'lo mismo' }})",
                     "keluhan berulang ({{ count }} sebelumnya tentang {{ category or 'hal ini' }})"),
    "why_route": t3("rule {{ number }}: {{ changes }}", "regla {{ number }}: {{ changes }}",
                    "aturan {{ number }}: {{ changes }}"),
    "why_route_department": t3("department {{ department }}", "departamento {{ department }}",
                               "departemen {{ department }}"),
    "why_route_severity": t3("severity {{ severity }}", "gravedad {{ severity }}",
                             "tingkat keparahan {{ severity }}"),
    "why_route_priority": t3("priority {{ priority }}", "prioridad {{ priority }}", "prioritas {{ priority }}"),
    "why_reopened_by": t3("reopened by {{ agent }}{% if note %}: {{ note }}{% endif %}",
                          "reabierta por {{ agent }}{% if note %}: {{ note }}{% endif %}",
                          "dibuka kembali oleh {{ agent }}{% if note %}: {{ note }}{% endif %}"),
    # for the agents, not the customer: where a conversation came from (a Telegram group it was moved
    # from). Agents have no language of their own: shown in settings.languages.default.
    "origin_public": t3("moved from the public group {{ place }}", "trasladada desde el grupo público {{ place }}",
                        "dipindahkan dari grup publik {{ place }}"),
    # for the agents, not the customer (desks, Slack cards): a message with files and no text, and a
    # customer with no name yet ("Web visitor 3f2a": the kind of contact and the id's last characters).
    # In settings.languages.default, as the two above.
    "desk_attachment": t3("(attachment)", "(archivo adjunto)", "(lampiran)"),
    "who_webchat": t3("Web visitor {{ tail }}", "Visitante web {{ tail }}", "Pengunjung web {{ tail }}"),
    "who_telegram": t3("Telegram user {{ tail }}", "Usuario de Telegram {{ tail }}", "Pengguna Telegram {{ tail }}"),
    "who_whatsapp": t3("WhatsApp contact {{ tail }}", "Contacto de WhatsApp {{ tail }}",
                       "Kontak WhatsApp {{ tail }}"),
    "who_email": t3("E-mail sender {{ tail }}", "Remitente de correo {{ tail }}", "Pengirim e-mail {{ tail }}"),
    "who_slack": t3("Slack user {{ tail }}", "Usuario de Slack {{ tail }}", "Pengguna Slack {{ tail }}"),
    "who_console": t3("Console user {{ tail }}", "Usuario de consola {{ tail }}", "Pengguna konsol {{ tail }}"),
    "who_customer": t3("Customer {{ tail }}", "Cliente {{ tail }}", "Pelanggan {{ tail }}"),
    # internal notes omnibot writes on a conversation for the agents (in the default language too):
    # a transfer's note, and a take-over ({{ previous_first }}: the previous holder's first name)
    "note_transfer": t3("Transfer note for {{ to }}: {{ note }}", "Nota del traspaso para {{ to }}: {{ note }}",
                        "Catatan pengalihan untuk {{ to }}: {{ note }}"),
    "note_taken_over": t3("{{ agent }} took over this conversation from {{ previous }} (no reply from "
                          "{{ previous_first }} for {{ minutes }} min).",
                          "{{ agent }} se ha hecho cargo de esta conversación en lugar de {{ previous }} "
                          "({{ previous_first }} llevaba {{ minutes }} min sin responder).",
                          "{{ agent }} mengambil alih percakapan ini dari {{ previous }} (tidak ada balasan dari "
                          "{{ previous_first }} selama {{ minutes }} menit)."),
    # buttons the engine adds itself
    "button_yes": t3("Yes", "Sí", "Ya"),
    "button_no": t3("No", "No", "Tidak"),
    "button_skip": t3("Skip", "Omitir", "Lewati"),
    "button_human": t3("Talk to a person", "Hablar con una persona", "Bicara dengan petugas"),
}

#: The names each system message may read.
SYSTEM_NAMES: dict[str, tuple[str, ...]] = {
    "agent_joined": ("agent", "team"), "resolved": ("agent", "result"), "handed_back": (),
    "transferred_team": ("agent", "team"), "transferred_agent": ("agent", "to", "team"),
    "taken_over": ("agent", "team", "previous"), "complaint_resolved": ("agent", "reference", "result"),
    "language_switched": (), "apology": (), "call_failed": (), "call_failed_reason": (), "button_yes": (),
    "couldnt_get": ("label",), "why_asked": (), "why_misunderstood": ("count",), "why_complaint": ("reason",),
    "why_reopened": (), "why_rule": ("flow", "reason"), "why_not_understood": ("label", "tries"),
    "why_call_failed": ("call", "why"), "why_urgency": ("level", "cues"),
    "why_ticket": ("reference", "category", "severity", "reopened"), "why_default": (),
    "why_reopened_by": ("agent", "note"), "why_flow_severity": ("severity",), "why_repeat": ("count", "category"),
    "why_route": ("number", "changes"), "why_route_department": ("department",),
    "why_route_severity": ("severity",), "why_route_priority": ("priority",),
    "button_no": (), "button_skip": (), "button_human": (), "card_removed": (), "public_reply": ("link",),
    "public_link_expired": (), "status_none": (), "status_not_found": ("reference",), "status_no_open": (),
    "status_last_resolved": ("reference",), "status_resolved": ("reference", "category", "when"),
    "status_open": ("reference", "category", "owner", "team", "due"), "status_more": ("count",),
    "link_bad_format": (), "link_too_many": (), "link_invalid": (), "link_done": (), "email_choices": (),
    "list_button": (), "list_section": (), "choose_prompt": (), "email_subject": (), "origin_public": ("place",),
    "desk_attachment": (), "who_webchat": ("tail",), "who_telegram": ("tail",), "who_whatsapp": ("tail",),
    "who_email": ("tail",), "who_slack": ("tail",), "who_console": ("tail",), "who_customer": ("tail",),
    "note_transfer": ("to", "note"), "note_taken_over": ("agent", "previous", "previous_first", "minutes"),
}
# the web chat widget's words (its buttons, status line, notices): flows/i18n_widget.py
SYSTEM_MESSAGES.update(WIDGET_MESSAGES)
SYSTEM_NAMES.update(WIDGET_NAMES)
assert SYSTEM_NAMES.keys() == SYSTEM_MESSAGES.keys()

#: Day and month abbreviations for dates customers read (:func:`when`); other languages get ISO dates.
_DATE_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
           ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")),
    "es": (("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
           ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic")),
    "id": (("Sen", "Sel", "Rab", "Kam", "Jum", "Sab", "Min"),
           ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des")),
}


def when(dt: Any, lang: str | None) -> str:
    """A date and time as a customer in ``lang`` reads it ("Fri 03 May, 14:00 UTC", "vie 03 may,
    14:00 UTC"); ``2024-05-03 14:00 UTC`` in a language without names here."""
    names = _DATE_NAMES.get(lang or "en")
    if names is None:
        return dt.strftime("%Y-%m-%d %H:%M UTC")
    days, months = names
    return f"{days[dt.weekday()]} {dt.day:02d} {months[dt.month - 1]}, {dt.strftime('%H:%M')} UTC"


def system_text(key: str, lang: str | None, langs: LanguageSettings | None,
                overrides: Mapping[str, Text] | None = None) -> str:
    """The template of system message ``key`` in ``lang`` (the flows' override, else built in)."""
    own = (overrides or {}).get(key)
    if own is not None:
        built_in = SYSTEM_MESSAGES.get(key, {})
        if isinstance(own, str):
            own = {(langs or _DEFAULT_LANGS).default: own}
        merged = {**built_in, **own}      # a language the flows do not give keeps the built-in text
        return pick(merged, lang, langs)
    return pick(SYSTEM_MESSAGES[key], lang, langs)


def render_system(key: str, lang: str | None, langs: LanguageSettings | None = None,
                  overrides: Mapping[str, Text] | None = None, **values: Any) -> str:
    """System message ``key`` in ``lang``, rendered with ``values`` (data, never templates)."""
    from .render import Renderer     # jinja2 sandbox; imported here, as flows.render needs nothing of this

    global _renderer
    if _renderer is None:
        _renderer = Renderer()
    src = system_text(key, lang, langs, overrides)
    return _renderer.render(src, values) if "{" in src else src


_renderer: Any = None

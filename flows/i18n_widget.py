"""The web chat widget's own words (connectors/static/widget.js), by language (README "Languages").

Part of :data:`flows.i18n.SYSTEM_MESSAGES` under the ``widget_`` prefix, so ``settings.messages``
overrides them like any other. The widget fills in ``{{ name }}`` placeholders itself (in the
browser): these texts take plain placeholders only, no other template syntax.
"""

from __future__ import annotations


def _t3(en: str, es: str, id_: str) -> dict[str, str]:
    return {"en": en, "es": es, "id": id_}


WIDGET_MESSAGES: dict[str, dict[str, str]] = {
    "widget_greeting": _t3("Hi there! Ask us anything - we usually answer right away.",
                           "¡Hola! Pregúntanos lo que quieras: solemos responder al momento.",
                           "Halo! Tanyakan apa saja - biasanya kami langsung menjawab."),
    "widget_placeholder": _t3("Write a message…", "Escribe un mensaje…", "Tulis pesan…"),
    "widget_message": _t3("Message", "Mensaje", "Pesan"),
    "widget_conversation": _t3("Conversation", "Conversación", "Percakapan"),
    "widget_send": _t3("Send message", "Enviar mensaje", "Kirim pesan"),
    "widget_attach": _t3("Attach an image or PDF", "Adjuntar una imagen o un PDF", "Lampirkan gambar atau PDF"),
    "widget_open": _t3("Open chat", "Abrir el chat", "Buka obrolan"),
    "widget_open_new": _t3("Open chat ({{ count }} new)", "Abrir el chat ({{ count }} nuevos)",
                           "Buka obrolan ({{ count }} baru)"),
    "widget_close": _t3("Close chat", "Cerrar el chat", "Tutup obrolan"),
    "widget_minimise": _t3("Minimise chat", "Minimizar el chat", "Kecilkan obrolan"),
    "widget_online": _t3("online", "en línea", "daring"),
    "widget_offline": _t3("offline", "sin conexión", "luring"),
    "widget_connecting": _t3("connecting", "conectando", "menyambung"),
    "widget_suggested": _t3("Suggested replies", "Respuestas sugeridas", "Balasan yang disarankan"),
    "widget_sending": _t3("Sending…", "Enviando…", "Mengirim…"),
    "widget_not_delivered": _t3("Not delivered", "No entregado", "Tidak terkirim"),
    "widget_retry": _t3("Retry", "Reintentar", "Coba lagi"),
    "widget_retry_label": _t3("Retry sending this message", "Volver a enviar este mensaje", "Kirim ulang pesan ini"),
    "widget_waiting": _t3("Waiting for an agent", "Esperando a un agente", "Menunggu petugas"),
    "widget_position": _t3("you are number {{ position }} in the queue", "eres el número {{ position }} en la cola",
                           "Anda nomor {{ position }} dalam antrean"),
    "widget_with_agent": _t3("You're chatting with a person", "Estás hablando con una persona",
                             "Anda sedang mengobrol dengan petugas"),
    "widget_too_long": _t3("That message is too long to send.", "Ese mensaje es demasiado largo para enviarlo.",
                           "Pesan itu terlalu panjang untuk dikirim."),
    "widget_too_long_max": _t3("That message is too long to send (at most {{ max }} characters).",
                               "Ese mensaje es demasiado largo para enviarlo (como máximo {{ max }} caracteres).",
                               "Pesan itu terlalu panjang untuk dikirim (paling banyak {{ max }} karakter)."),
    "widget_rate_limited": _t3("You are sending messages too quickly. Please wait a moment.",
                               "Estás enviando mensajes demasiado rápido. Espera un momento.",
                               "Anda mengirim pesan terlalu cepat. Mohon tunggu sebentar."),
    "widget_error": _t3("Something went wrong on our side. Please try again.",
                        "Algo ha fallado por nuestra parte. Inténtalo de nuevo.",
                        "Terjadi kesalahan di pihak kami. Silakan coba lagi."),
    "widget_still_connecting": _t3("Still connecting - please try again in a moment.",
                                   "Todavía conectando: inténtalo de nuevo en un momento.",
                                   "Masih menyambung - silakan coba lagi sebentar lagi."),
    "widget_uploading": _t3("Uploading {{ name }}…", "Subiendo {{ name }}…", "Mengunggah {{ name }}…"),
    "widget_file_too_large": _t3("That file is too large.", "Ese archivo es demasiado grande.",
                                 "Berkas itu terlalu besar."),
    "widget_upload_failed": _t3("Upload failed - please check your connection.",
                                "No se ha podido subir: revisa tu conexión.",
                                "Gagal mengunggah - periksa koneksi Anda."),
}

#: The placeholders each widget text may use.
WIDGET_NAMES: dict[str, tuple[str, ...]] = {
    k: tuple(n for n in ("count", "position", "max", "name") if "{{ " + n + " }}" in v["en"])
    for k, v in WIDGET_MESSAGES.items()}

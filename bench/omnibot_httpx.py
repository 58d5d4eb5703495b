"""`omnibot` as before issue 20's change: Telegram's Bot API requests through PTB's HTTPXRequest.

For A/B rows only (bench/capacity.py --telegram-before): the same CLI, with the Telegram
connector's request class swapped back, so the two differ in nothing else.

    python bench/omnibot_httpx.py run -c config.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telegram.request import HTTPXRequest  # noqa: E402

import connectors.telegram  # noqa: E402
from bot.cli import main  # noqa: E402


def _httpx(connection_pool_size: int, **timeouts: Any) -> HTTPXRequest:
    return HTTPXRequest(connection_pool_size=connection_pool_size, **timeouts)


connectors.telegram.AiohttpRequest = _httpx  # type: ignore[misc,assignment]

if __name__ == "__main__":
    main()

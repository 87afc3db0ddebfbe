"""The reply cache: an exact key per turn (``key.py``), an in-process LRU with a TTL (``local.py``) in front of a
Redis tier shared by every node (``shared.py``); the turn filter that uses them is ``filters/cache.py``."""

from .key import Reply, cacheable, turn_key
from .local import LocalCache
from .shared import Claim, SharedCache

__all__ = ["Claim", "LocalCache", "Reply", "SharedCache", "cacheable", "turn_key"]

"""Which items travel together to the model deployment, and under which routing key.

Self-certainty of a GRPO group's members shares one prompt encoding only if they meet
in one batch on one replica. The ingress therefore groups a request's items by prompt
and sends each group as one call whose ``session_id`` is the prompt's hash; the
consistent-hash router maps equal keys to the same replica, whichever ingress replica
the call comes from, so the members of a group sent as separate requests meet there too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from reward_server.certainty.types import CertaintyRequest

# Two prompts share an encoding only if their token ids are equal; the key is a hash of
# the prompt as sent (ids, text or messages), so equal prompts always share a key.
_SEP = b"\x00"


def prompt_key(request: CertaintyRequest) -> str | None:
    """A short stable key of the request's prompt, or None when it has none.

    BLAKE2b over the prompt's form and content (linear in the prompt's size); the form
    is part of the key because text and messages render differently.
    """
    digest = hashlib.blake2b(digest_size=12)
    if request.prompt_ids is not None:
        digest.update(b"ids")
        digest.update(b",".join(str(i).encode() for i in request.prompt_ids))
    elif request.prompt_messages is not None:
        digest.update(b"chat")
        for role, content in request.prompt_messages:
            digest.update(_SEP + role.encode() + _SEP + content.encode("utf-8", "surrogatepass"))
    elif request.prompt_text is not None:
        digest.update(b"text" + _SEP + request.prompt_text.encode("utf-8", "surrogatepass"))
    else:
        return None
    return digest.hexdigest()


def indices_by_prompt_key(
    requests: Sequence[CertaintyRequest],
) -> dict[str | None, list[int]]:
    """Indices of ``requests`` by :func:`prompt_key` (the routing key), keys in first-seen
    order (None: no prompt). Only the ingress's split into model calls; the backends'
    grouping by identical prompt ids is ``certainty.encoding``'s."""
    groups: dict[str | None, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(prompt_key(request), []).append(index)
    return groups

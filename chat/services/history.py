"""What is sent upstream for an answer: the branch of the conversation above it."""

from chat.models import Conversation, Message


def branch_messages(*, messages: list[Message], leaf_id: int) -> list[Message]:
    """The chain of messages from the root of the conversation down to `leaf_id`.

    Following parent links (not creation order) keeps an edited or regenerated
    branch out of the history of its siblings.
    """
    by_id = {m.pk: m for m in messages}
    chain: list[Message] = []
    seen: set[int] = set()
    node = by_id.get(leaf_id)
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        chain.append(node)
        node = by_id.get(node.parent_id) if node.parent_id else None
    chain.reverse()
    return chain


def upstream_messages(*, conversation: Conversation, chain: list[Message]) -> list[dict]:
    """The chain as provider messages: system prompt first, then every message
    with text. Assistant answers that failed before any text are left out."""
    result: list[dict] = []
    if conversation.system_prompt.strip():
        result.append({"role": "system", "content": conversation.system_prompt})
    for message in chain:
        if message.role == Message.Role.ASSISTANT and not message.content:
            continue
        result.append({"role": message.role, "content": message.content})
    return result

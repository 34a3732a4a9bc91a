"""Reads. Every fetch by id takes the user and checks ownership in the same query."""


from chat.models import Conversation, Message


class NotFound(Exception):
    """No such object among the user's own: the same whether it is missing or someone else's."""


def conversation_list(*, user) -> list[Conversation]:
    """The user's conversations for the sidebar: pinned first, then newest first."""
    return list(
        Conversation.objects.for_user(user)
        .order_by("-pinned", "-updated_at", "-id")
        .only("id", "title", "pinned", "created_at", "updated_at")
    )


def conversation_get(*, user, conversation_id: int) -> Conversation:
    try:
        return Conversation.objects.for_user(user).get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Conversation {conversation_id} was not found.") from None


async def aconversation_get(*, user, conversation_id: int) -> Conversation:
    try:
        return await Conversation.objects.for_user(user).aget(pk=conversation_id)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Conversation {conversation_id} was not found.") from None


def message_list(*, conversation: Conversation) -> list[Message]:
    """All messages of a conversation the caller already fetched through conversation_get."""
    return list(conversation.messages.order_by("created_at", "id"))


async def amessage_list(*, conversation: Conversation) -> list[Message]:
    return [m async for m in conversation.messages.order_by("created_at", "id")]


async def amessage_get(*, user, message_id: int) -> Message:
    try:
        return await Message.objects.for_user(user).select_related("conversation").aget(
            pk=message_id
        )
    except (Message.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Message {message_id} was not found.") from None

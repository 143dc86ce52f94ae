"""Typed ids: a profile id and a conversation id cannot be swapped silently."""

from __future__ import annotations

from typing import NewType
from uuid import UUID

CustomerId = NewType("CustomerId", UUID)
ProfileId = NewType("ProfileId", UUID)
ConversationId = NewType("ConversationId", UUID)
MessageId = NewType("MessageId", UUID)

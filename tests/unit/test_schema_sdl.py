"""schema/schema.graphql is what the code serves: regenerate it with `make schema`."""

from __future__ import annotations

from pathlib import Path

from gql.ops.export_schema import export

SDL = Path(__file__).resolve().parents[2] / "schema" / "schema.graphql"


def test_exported_sdl_matches_the_code() -> None:
    assert SDL.read_text() == export(), "schema/schema.graphql is stale: run `make schema`"


def test_sdl_keeps_the_public_contract() -> None:
    sdl = SDL.read_text()
    for line in [
        "customerId: UUID = null\n  ): Conversation\n",
        "customerId: UUID = null\n  ): AdminConversationPayload!",
        "sendMessage(\n    conversationId: UUID!\n    content: String!\n",
        "clientMessageId: String = null\n  ): Message!",
        "  clientMessageId: String\n}",
        "repairOrphanedConversations(dryRun: Boolean! = true): RepairReport!",
        "messages(",
        "profileCoveragePercent: Float\n",
    ]:
        assert line in sdl

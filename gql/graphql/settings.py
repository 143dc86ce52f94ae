"""The GraphQL layer's settings: what a document may cost, the caches that spare parsing and
validating it again, and what the resolvers pass the repository (the welcome message, the
send limits)."""

from __future__ import annotations

from dataclasses import dataclass

from repo.allowance import SendLimits
from repo.config import ConfigError, variable

DEFAULT_WELCOME_MESSAGE = "Hi! Thanks for reaching out. How can we help you today?"
MAX_WELCOME_MESSAGE_LENGTH = 4000


@dataclass(frozen=True, slots=True)
class GraphQLSettings:
    # blank is not the default: a welcome message must say something (validate)
    welcome_message: str = variable(
        "WELCOME_MESSAGE", DEFAULT_WELCOME_MESSAGE, blank_is_default=False
    )
    rate_limit_messages_per_minute: int = variable("RATE_LIMIT_MESSAGES_PER_MINUTE", 60, minimum=1)
    rate_limit_staff_messages_per_minute: int = variable(
        "RATE_LIMIT_STAFF_MESSAGES_PER_MINUTE", 600, minimum=1
    )
    max_query_depth: int = variable("MAX_QUERY_DEPTH", 10, minimum=2)
    max_aliases: int = variable("MAX_ALIASES", 15, minimum=1)
    max_tokens: int = variable("MAX_TOKENS", 2000, minimum=100)
    max_fields: int = variable("MAX_FIELDS", 2000, minimum=10)
    max_validation_cost: int = variable("MAX_VALIDATION_COST", 3000, minimum=100)
    parse_cache_bytes: int = variable("PARSE_CACHE_BYTES", 16 * 1024 * 1024, minimum=0)
    validation_cache_bytes: int = variable("VALIDATION_CACHE_BYTES", 1024 * 1024, minimum=0)

    def validate(self) -> None:
        if not self.welcome_message.strip():
            raise ConfigError("WELCOME_MESSAGE: must not be empty")
        if len(self.welcome_message) > MAX_WELCOME_MESSAGE_LENGTH:
            raise ConfigError(
                f"WELCOME_MESSAGE: at most {MAX_WELCOME_MESSAGE_LENGTH} characters (a message)"
            )

    @property
    def send_limits(self) -> SendLimits:
        return SendLimits(
            self.rate_limit_messages_per_minute, self.rate_limit_staff_messages_per_minute
        )

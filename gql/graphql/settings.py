"""The GraphQL layer's settings: what a document may cost, the caches that spare parsing and
validating it again, and what the resolvers pass the repository (the welcome message, the
send limits)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from repo.allowance import SendLimits
from repo.config import ConfigError, read_int

DEFAULT_WELCOME_MESSAGE = "Hi! Thanks for reaching out. How can we help you today?"
MAX_WELCOME_MESSAGE_LENGTH = 4000


@dataclass(frozen=True, slots=True)
class GraphQLSettings:
    welcome_message: str = DEFAULT_WELCOME_MESSAGE
    rate_limit_messages_per_minute: int = 60
    rate_limit_staff_messages_per_minute: int = 600
    max_query_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 2000
    max_fields: int = 2000
    max_validation_cost: int = 3000
    parse_cache_bytes: int = 16 * 1024 * 1024
    validation_cache_bytes: int = 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GraphQLSettings:
        defaults = cls()
        return cls(
            welcome_message=env.get("WELCOME_MESSAGE", DEFAULT_WELCOME_MESSAGE),
            rate_limit_messages_per_minute=read_int(
                env,
                "RATE_LIMIT_MESSAGES_PER_MINUTE",
                defaults.rate_limit_messages_per_minute,
                minimum=1,
            ),
            rate_limit_staff_messages_per_minute=read_int(
                env,
                "RATE_LIMIT_STAFF_MESSAGES_PER_MINUTE",
                defaults.rate_limit_staff_messages_per_minute,
                minimum=1,
            ),
            max_query_depth=read_int(env, "MAX_QUERY_DEPTH", defaults.max_query_depth, minimum=2),
            max_aliases=read_int(env, "MAX_ALIASES", defaults.max_aliases, minimum=1),
            max_tokens=read_int(env, "MAX_TOKENS", defaults.max_tokens, minimum=100),
            max_fields=read_int(env, "MAX_FIELDS", defaults.max_fields, minimum=10),
            max_validation_cost=read_int(
                env, "MAX_VALIDATION_COST", defaults.max_validation_cost, minimum=100
            ),
            parse_cache_bytes=read_int(
                env, "PARSE_CACHE_BYTES", defaults.parse_cache_bytes, minimum=0
            ),
            validation_cache_bytes=read_int(
                env, "VALIDATION_CACHE_BYTES", defaults.validation_cache_bytes, minimum=0
            ),
        )

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

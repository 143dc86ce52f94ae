"""Demo data for `make run`: an admin, a customer with a profile, a legacy customer without one."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from repo.backend import write_transaction
from repo.models import Profile, User
from repo.units import unit_of_work


@dataclass(frozen=True, slots=True)
class DemoUser:
    id: UUID
    email: str
    full_name: str
    role: str


ADMIN = DemoUser(
    UUID("00000000-0000-4000-8000-00000000ad01"), "ada@helpline.example", "Ada Admin", "admin"
)
CUSTOMER = DemoUser(
    UUID("00000000-0000-4000-8000-0000000c0001"), "cleo@example.com", "Cleo Customer", "customer"
)
LEGACY_CUSTOMER = DemoUser(
    UUID("00000000-0000-4000-8000-0000000c0002"),
    "lee@example.com",
    "Lee Legacy",
    "legacy customer (users row, no profile)",
)
DEMO_USERS = (ADMIN, CUSTOMER, LEGACY_CUSTOMER)


@unit_of_work
def seed_demo_data() -> list[DemoUser]:
    """Insert the demo users once; return those inserted now (empty on a second run)."""
    inserted = []
    with write_transaction():
        for user in DEMO_USERS:
            created = (
                User.insert(id=user.id, email=user.email, full_name=user.full_name)
                .on_conflict(conflict_target=[User.id], action="NOTHING")
                .as_rowcount()
                .execute()
            )
            if not created:
                continue
            inserted.append(user)
            if user is ADMIN:
                Profile.update(is_admin=True).where(Profile.id == user.id).execute()
            elif user is LEGACY_CUSTOMER:
                # Legacy data: users created before the users->profiles trigger existed.
                Profile.delete().where(Profile.id == user.id).execute()
    return inserted

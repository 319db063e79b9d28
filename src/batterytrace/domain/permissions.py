"""One permission vocabulary, and a pure function from roles to permissions.

Every API route declares the permission it needs; a test walks the routes and fails if one has
none. Event-level rules (who may record which step on which battery) live in ``lifecycle``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from batterytrace.domain.model import Role


class Permission(StrEnum):
    PUBLIC_READ = "public:read"  # public passport, public battery tier, the log
    ENTERPRISE_CREATE = "enterprise:create"
    ENTERPRISE_READ = "enterprise:read"
    ENTERPRISE_READ_ANY = "enterprise:read:any"
    LICENCE_GRANT = "enterprise:licence:grant"
    KEY_CREATE_OWN = "enterprise:key:create"
    KEY_CREATE_ANY = "enterprise:key:create:any"
    EVENT_RECORD = "battery:event:record"
    BATTERY_READ = "battery:read"
    BATTERY_LIST_ANY = "battery:list:any"
    SECURITY_READ = "security:read"
    ALERT_READ = "alert:read"
    ALERT_MANAGE = "alert:manage"
    REPORT_READ = "report:read"


_EVERY_ENTERPRISE = frozenset(
    {
        Permission.PUBLIC_READ,
        Permission.ENTERPRISE_READ,
        Permission.KEY_CREATE_OWN,
        Permission.EVENT_RECORD,
        Permission.BATTERY_READ,
        Permission.ALERT_READ,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.BATTERY_MAKER: _EVERY_ENTERPRISE,
    Role.AUTOMAKER: _EVERY_ENTERPRISE,
    Role.SERVICE_OUTLET: _EVERY_ENTERPRISE,
    Role.DISMANTLER: _EVERY_ENTERPRISE,
    Role.REPURPOSER: _EVERY_ENTERPRISE,
    Role.RECYCLER: _EVERY_ENTERPRISE,
    Role.REGULATOR: frozenset(Permission),
}

ANONYMOUS_PERMISSIONS = frozenset({Permission.PUBLIC_READ})


def permissions_for(roles: Iterable[Role] | None) -> frozenset[Permission]:
    """The permissions of an enterprise with these roles; ``None`` is an anonymous caller."""
    if roles is None:
        return ANONYMOUS_PERMISSIONS
    out: set[Permission] = set(ANONYMOUS_PERMISSIONS)
    for role in roles:
        out |= ROLE_PERMISSIONS[role]
    return frozenset(out)

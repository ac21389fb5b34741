"""Access control: principals, API keys, signed tokens, the per-layer policy and the audit trail."""

from geocloud.access.policy import can_read, visible
from geocloud.access.principal import ANONYMOUS, Principal

__all__ = ["ANONYMOUS", "Principal", "can_read", "visible"]

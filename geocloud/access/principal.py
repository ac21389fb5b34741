"""Who is asking: the anonymous public, or a principal of an agency with a role."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    kind: str                        # anonymous | key | token | jwt
    id: str | None = None            # key id (or the key id a token was issued for)
    name: str | None = None          # the person or service
    agency: str | None = None
    role: str | None = None
    city_agency: bool = False
    layers: frozenset | None = None  # a key or token scoped to some layers; None: no scope
    roles: frozenset = frozenset()   # every role (a JWT may carry several); ``role`` is one of them
    expires: float = float("inf")    # a JWT's expiry (epoch seconds)

    def has_role(self, roles) -> bool:
        return bool(self.roles & set(roles)) or self.role in roles

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal("anonymous")

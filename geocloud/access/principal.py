"""Who is asking: the anonymous public, or a principal of an agency with a role."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    kind: str                        # anonymous | key | token
    id: str | None = None            # key id (or the key id a token was issued for)
    name: str | None = None          # the person or service
    agency: str | None = None
    role: str | None = None
    city_agency: bool = False
    layers: frozenset | None = None  # a key or token scoped to some layers; None: no scope

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal("anonymous")

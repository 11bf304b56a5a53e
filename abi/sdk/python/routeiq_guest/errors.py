"""Host-call failures as exceptions. Every host call answers a status (mirroring
proxy_status_t); a refusal by the operator's policy is `Unimplemented` (capability not
granted) or `BadArgument` (outside an allow-list or size limit), never a crash."""

from __future__ import annotations

from ._bindings import Err, Status


class HostError(Exception):
    """A host call answered a status other than OK."""

    status: Status = Status.INTERNAL_FAILURE

    def __init__(self, status: Status, call: str = "") -> None:
        super().__init__(f"{call or 'host call'}: {status.name.lower()}")
        self.status = status
        self.call = call

    @property
    def code(self) -> int:
        """The proxy_status_t value (NOT_FOUND = 1 ... UNIMPLEMENTED = 12)."""
        return self.status.value


class NotFound(HostError):
    pass


class BadArgument(HostError):
    pass


class CasMismatch(HostError):
    pass


class Unimplemented(HostError):
    """The call is outside the plugin's grant (or not provided by this host)."""


_BY_STATUS = {
    Status.NOT_FOUND: NotFound,
    Status.BAD_ARGUMENT: BadArgument,
    Status.CAS_MISMATCH: CasMismatch,
    Status.UNIMPLEMENTED: Unimplemented,
}


def host_error(err: Err, call: str = "") -> HostError:
    status = err.value
    return _BY_STATUS.get(status, HostError)(status, call)

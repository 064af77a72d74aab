"""The project's errors: one hierarchy, each class carrying its status as data.

Errors cross two seams. Backend adapters turn transport and provider failures
into the ``Upstream*`` classes below (around the call *and* around iterating
the stream). The gRPC servicer alone turns any ``MeshgateError`` into a status,
from ``cls.status`` (the name of a ``grpc.StatusCode``); the client turns a
status back into the same class. Nothing here imports grpc or HTTP code.

    MeshgateError                     INTERNAL
    ├── InvalidRequest                INVALID_ARGUMENT
    ├── Unauthenticated               UNAUTHENTICATED
    ├── PermissionDenied              PERMISSION_DENIED
    ├── NotFound                      NOT_FOUND
    ├── AlreadyExists                 ALREADY_EXISTS
    ├── FailedPrecondition            FAILED_PRECONDITION
    ├── ResourceExhausted             RESOURCE_EXHAUSTED  (retry_after_s)
    ├── Unavailable                   UNAVAILABLE         (retry_after_s)
    ├── DeadlineExceeded              DEADLINE_EXCEEDED
    ├── Cancelled                     CANCELLED
    └── UpstreamError                 (provider, http_status, retryable)
        ├── UpstreamUnavailable       UNAVAILABLE        connect error, 5xx, 529   retryable
        ├── UpstreamRateLimited       RESOURCE_EXHAUSTED 429                       retryable
        ├── UpstreamAuthFailed        FAILED_PRECONDITION 401/403: our credentials retryable
        ├── UpstreamModelNotFound     FAILED_PRECONDITION 404: route misconfigured retryable
        ├── UpstreamBadRequest        INVALID_ARGUMENT   400/413/422               final
        ├── UpstreamTimeout           UNAVAILABLE        no answer in time         retryable
        └── UpstreamStreamBroken      UNAVAILABLE        cut after tokens were sent final

"retryable" means another target may succeed; the dispatcher only retries
before the first token has reached the client.
"""

from __future__ import annotations


class MeshgateError(Exception):
    """Base of every error the gateway reports to a caller.

    ``str(error)`` is the message a person reads: what went wrong and what to do.
    """

    status: str = "INTERNAL"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidRequest(MeshgateError):
    status = "INVALID_ARGUMENT"


class Unauthenticated(MeshgateError):
    status = "UNAUTHENTICATED"


class PermissionDenied(MeshgateError):
    status = "PERMISSION_DENIED"


class NotFound(MeshgateError):
    status = "NOT_FOUND"


class AlreadyExists(MeshgateError):
    status = "ALREADY_EXISTS"


class FailedPrecondition(MeshgateError):
    status = "FAILED_PRECONDITION"


class ResourceExhausted(MeshgateError):
    status = "RESOURCE_EXHAUSTED"


class Unavailable(MeshgateError):
    status = "UNAVAILABLE"


class DeadlineExceeded(MeshgateError):
    status = "DEADLINE_EXCEEDED"


class Cancelled(MeshgateError):
    status = "CANCELLED"


class UpstreamError(MeshgateError):
    """A failure at or on the way to a provider.

    ``provider`` names the provider (config name or registered backend id);
    ``http_status`` is the provider's HTTP status when there was one. The
    message never holds a credential: adapters build it from the status and
    the provider's own error text, which never echoes keys.
    """

    status = "UNAVAILABLE"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.provider = provider
        self.http_status = http_status


class UpstreamUnavailable(UpstreamError):
    status = "UNAVAILABLE"


class UpstreamRateLimited(UpstreamError):
    status = "RESOURCE_EXHAUSTED"


class UpstreamAuthFailed(UpstreamError):
    status = "FAILED_PRECONDITION"


class UpstreamModelNotFound(UpstreamError):
    status = "FAILED_PRECONDITION"


class UpstreamBadRequest(UpstreamError):
    status = "INVALID_ARGUMENT"
    retryable = False


class UpstreamTimeout(UpstreamError):
    status = "UNAVAILABLE"


class UpstreamStreamBroken(UpstreamError):
    status = "UNAVAILABLE"
    retryable = False


def for_http_status(http_status: int) -> type[UpstreamError]:
    """The error class for a provider's HTTP error status."""
    if http_status in (401, 403):
        return UpstreamAuthFailed
    if http_status == 404:
        return UpstreamModelNotFound
    if http_status == 429:
        return UpstreamRateLimited
    if http_status in (400, 413, 422):
        return UpstreamBadRequest
    return UpstreamUnavailable


BY_STATUS: dict[str, type[MeshgateError]] = {
    cls.status: cls
    for cls in (
        MeshgateError,
        InvalidRequest,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
    )
}
"""The class a client raises for a status name (the upstream subclasses fold
into their status's general class on the client side)."""

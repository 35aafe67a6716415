"""Errors the runbook commands report in one line each, with the exit code they end with."""

from __future__ import annotations


class RunbookError(Exception):
    """A failure the user can act on; ``str()`` is the one-line message."""

    exit_code = 1


class UnknownNodeError(RunbookError):
    """No Node and no NodeProxyHealth of that name."""


class NoAgentError(RunbookError):
    """The Node exists, but no agent reports for it."""


class UnknownReasonError(RunbookError):
    """``explain`` got a word that is neither an Event reason nor a hold rule."""


class ClusterAccessError(RunbookError):
    """The API server cannot be used: not reachable, no kubeconfig, CRDs missing, no permission."""

    exit_code = 3


class KubeconfigUnusableError(RunbookError):
    """The kubeconfig is missing, unreadable or invalid: nothing was asked of any API server."""

    exit_code = 4


class CrdsMissingError(ClusterAccessError):
    pass


class ForbiddenError(ClusterAccessError):
    pass


class UnreachableError(ClusterAccessError):
    pass

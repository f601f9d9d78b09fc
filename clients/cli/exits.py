"""The exit codes of `cofab`, one per kind of failure a script may want to tell apart.

| code | meaning                                                              |
|------|----------------------------------------------------------------------|
| 0    | success                                                              |
| 1    | any other error (a local file missing, a server error, INTERNAL)     |
| 2    | usage: a bad command line, or a request the server calls invalid     |
| 3    | not found (or not visible to your organization)                      |
| 4    | not authenticated: no token, or an unknown, expired or revoked one   |
| 5    | permission denied: your organization or role may not do this         |
| 6    | conflict or precondition: state, etag or branch head moved, exists   |
| 7    | unavailable: the service is down or unreachable, or timed out        |
| 8    | a limit was exceeded (size, rate)                                    |
| 130  | interrupted (Ctrl-C)                                                 |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAUTHENTICATED = 4
EXIT_PERMISSION_DENIED = 5
EXIT_CONFLICT = 6
EXIT_UNAVAILABLE = 7
EXIT_LIMIT = 8
EXIT_INTERRUPTED = 130

# gRPC status code names -> exit codes; a code not listed exits EXIT_ERROR.
BY_STATUS = {
    "INVALID_ARGUMENT": EXIT_USAGE,
    "OUT_OF_RANGE": EXIT_USAGE,
    "NOT_FOUND": EXIT_NOT_FOUND,
    "UNAUTHENTICATED": EXIT_UNAUTHENTICATED,
    "PERMISSION_DENIED": EXIT_PERMISSION_DENIED,
    "FAILED_PRECONDITION": EXIT_CONFLICT,
    "ABORTED": EXIT_CONFLICT,
    "ALREADY_EXISTS": EXIT_CONFLICT,
    "UNAVAILABLE": EXIT_UNAVAILABLE,
    "DEADLINE_EXCEEDED": EXIT_UNAVAILABLE,
    "RESOURCE_EXHAUSTED": EXIT_LIMIT,
}


def for_status(code_name: str) -> int:
    """The exit code of a gRPC status code, by name (e.g. "NOT_FOUND")."""
    return BY_STATUS.get(code_name, EXIT_ERROR)

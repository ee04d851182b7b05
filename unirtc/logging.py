"""unirtc's loggers, filtered by ``[server] log_level`` without touching twistd's own observers."""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def get_logger(namespace: str) -> Logger:
    """A Logger for ``namespace`` whose events pass the configured level filter."""
    return Logger(namespace=namespace, observer=_observer)


def set_level(name: str) -> None:
    """Apply ``[server] log_level`` (debug, info, warn, error, critical)."""
    _predicate.setLogLevelForNamespace("", LogLevel.levelWithName(name))

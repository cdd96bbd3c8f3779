"""soniq: background jobs for Django, stored in the database the project already has.

Importing this package needs no configured Django project.
"""

from soniq._version import __version__
from soniq.app import Soniq
from soniq.core.context import JobContext
from soniq.core.control import MAX_SNOOZES, Cancel, Discard, JobControl, Retry, Snooze
from soniq.core.enqueue import EnqueueOptions
from soniq.core.errors import (
    ArgumentsNotSerializableError,
    ArgumentsTooLargeError,
    ConfigurationError,
    DatabaseUnavailableError,
    DuplicateJobError,
    EnqueueContentionError,
    EnqueueError,
    InvalidArgumentsError,
    InvalidConnectionError,
    InvalidJobIdError,
    InvalidOptionError,
    JobCancelledError,
    JobDefinitionError,
    JobFailedError,
    JobNotFoundError,
    JobNotRegisteredError,
    ResultValidationError,
    SchemaMissingError,
    SoniqError,
    SoniqWarning,
    TransactionWarning,
)
from soniq.core.operations import ActionResult
from soniq.core.periodic import Schedule, ScheduleDefinition
from soniq.core.records import JobInfo
from soniq.core.registry import JobRegistry
from soniq.core.settings import SoniqSettings
from soniq.core.status import JobStatus
from soniq.core.taskref import TaskRef
from soniq.job_function import ConfiguredJob, JobFunction
from soniq.schedules import cron, daily, every, monthly, weekly

__all__ = [
    "MAX_SNOOZES",
    "ActionResult",
    "ArgumentsNotSerializableError",
    "ArgumentsTooLargeError",
    "Cancel",
    "ConfigurationError",
    "ConfiguredJob",
    "DatabaseUnavailableError",
    "Discard",
    "DuplicateJobError",
    "EnqueueContentionError",
    "EnqueueError",
    "EnqueueOptions",
    "InvalidArgumentsError",
    "InvalidConnectionError",
    "InvalidJobIdError",
    "InvalidOptionError",
    "JobCancelledError",
    "JobContext",
    "JobControl",
    "JobDefinitionError",
    "JobFailedError",
    "JobFunction",
    "JobInfo",
    "JobNotFoundError",
    "JobNotRegisteredError",
    "JobRegistry",
    "JobStatus",
    "ResultValidationError",
    "Retry",
    "Schedule",
    "ScheduleDefinition",
    "SchemaMissingError",
    "Snooze",
    "Soniq",
    "SoniqError",
    "SoniqSettings",
    "SoniqWarning",
    "TaskRef",
    "TransactionWarning",
    "__version__",
    "cron",
    "daily",
    "every",
    "monthly",
    "weekly",
]

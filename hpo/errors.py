"""Errors a user can cause and fix: each carries one line that says what and where."""

from __future__ import annotations


class HpoError(Exception):
    """Base of every error the CLI turns into one line and a non-zero exit."""


class SpecError(HpoError):
    """A study spec breaks a rule."""


class DataError(HpoError):
    """A data source is missing, unreadable or malformed."""


class StorageError(HpoError):
    """A storage URL is malformed or the storage cannot be reached."""


class StudyNotFoundError(HpoError):
    """No study of that name exists in the storage."""

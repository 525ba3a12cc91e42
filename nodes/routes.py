"""Placeholder: HTTP routes for the front end."""


def register() -> None:
    return None

"""The exception tree. Exactly one place, the CLI, turns these into messages and exit codes."""


class SdpodError(Exception):
    """Base of every error sdpod reports to a user.

    `hint` is an optional second line telling the user what they can do about it.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(SdpodError):
    """The user's TOML is malformed, or a value breaks a rule.

    `problems` holds every problem found in the file, one line each, so that a user
    fixes them all in one pass.
    """

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        super().__init__("\n".join(problems), hint)
        self.problems = problems


class ImageError(SdpodError):
    """An image cannot be found, read, verified or unpacked."""


class RuntimeSetupError(SdpodError):
    """A container's namespaces, mounts or process cannot be set up."""


class SystemdError(SdpodError):
    """The systemd manager refused a request, or a unit's job did not finish as `done`."""


class NetworkError(SdpodError):
    """A container's network or a published port cannot be set up."""

"""Fixtures of the operations tests: the `filr` command's environment."""

from tests.cli.conftest import cli_env as cli_env

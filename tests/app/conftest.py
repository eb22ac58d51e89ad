"""The app tests share the CLI tests' generated tables (tests/cli/conftest.py)."""

from cli.conftest import TASK_FLAGS, _one_thread, make_table, tables

__all__ = ["TASK_FLAGS", "_one_thread", "make_table", "tables"]

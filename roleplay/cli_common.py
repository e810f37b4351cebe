"""What every `roleplay` command shares: the app context, and errors turned into one-line messages."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from roleplay.errors import RoleplayError

if TYPE_CHECKING:
    from roleplay.context import AppContext


def app_context() -> AppContext:
    """The command's app context: settings read once, parts built on first use, closed when the command ends."""
    from roleplay.context import AppContext

    root = click.get_current_context().find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
        root.call_on_close(root.obj.close)
    return root.obj


def debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return bool(getattr(getattr(obj, "settings", None), "debug", False))


class CliGroup(click.Group):
    """A click group that turns every error into a one-line message instead of a traceback.

    Args:
        lazy: Subcommands imported only when used, as {name: "module:attribute"}, so a command (or `--help`) pays
            for no other command's imports.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy.pop(cmd_name, None)
        if target is not None:
            import importlib

            module, _, attribute = target.partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RoleplayError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"error: {line}", err=True)
            sys.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except BrokenPipeError:  # the output was piped into something that stopped reading (e.g. `head`)
            sys.stderr.close()
            sys.exit(0)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            click.echo("error: out of memory; the input is too large for this machine", err=True)
            sys.exit(1)
        except OSError as exc:  # a file or device the command was pointed at
            if debug_enabled():
                raise
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            click.echo(f"error: {where}{exc.strerror or type(exc).__name__}; check the path and its permissions",
                       err=True)
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - last line of defence for users
            if debug_enabled():
                raise
            click.echo(internal_error(exc), err=True)
            sys.exit(1)


def internal_error(exc: BaseException) -> str:
    """The one line shown for an error roleplay did not foresee: its kind, never its text (it may hold SQL)."""
    return (f"error: roleplay failed inside ({type(exc).__name__}); this is a bug, so please report it with the "
            "details that ROLEPLAY_DEBUG=1 prints")

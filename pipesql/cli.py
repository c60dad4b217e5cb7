"""The ``pipesql`` command: one subcommand per job.

Each job is a module exposing a ``Settings`` dataclass (see :mod:`pipesql.config.settings`) and a
``run(settings) -> int`` function. Modules are imported only when their subcommand runs, so
``pipesql decompile`` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from pipesql import __version__
from pipesql.allocator import return_freed_memory
from pipesql.config.settings import add_arguments, resolve
from pipesql.models.loading import ModelUnavailable, ignore_unused_kernel_notice
from pipesql.progress import prepare_output

# name -> (module, one-line description); the order is the data flow.
COMMANDS: dict[str, tuple[str, str]] = {
    "fetch": ("pipesql.fetch", "Fetch Spider / BIRD / models, or import a local copy."),
    "decompile": ("pipesql.decompile.cli", "Standard SQL -> GoogleSQL pipe SQL."),
    "validate": ("pipesql.validate", "Decompile a benchmark and prove each pair by execution."),
    "generate": ("pipesql.generate", "Golden pairs -> chat training data."),
    "train": ("pipesql.train", "LoRA / QLoRA fine-tuning with TRL."),
    "merge": ("pipesql.merge", "Fold a LoRA adapter into a standalone model."),
    "evaluate": ("pipesql.evaluate", "Execution accuracy of a model, one-shot or as an agent."),
    "serve": ("pipesql.serve", "OpenAI-compatible server for a model and the agent tools."),
    "rl": ("pipesql.rl", "GRPO after SFT, rewarded by execution match (one-shot or step by step)."),
    "pipeline": ("pipesql.pipeline", "The whole pipeline, small, on the embedded demo corpus."),
}


def load_command(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(module_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipesql", description="Pipe-SQL training data and models.",
                                     epilog=commands_listing(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pipesql {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND",
                        help="one of the commands below; `pipesql COMMAND --help` lists its flags")
    return parser


def commands_listing() -> str:
    """One line per command, in data-flow order (argparse would run them into one paragraph)."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {description}" for name, (_, description) in COMMANDS.items()]
    return "commands:\n" + "\n".join(lines)


def command_parser(name: str, settings_cls: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"pipesql {name}", description=COMMANDS[name][1])
    add_arguments(parser, settings_cls)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    prepare_output()  # before the command imports the libraries
    ignore_unused_kernel_notice()
    return_freed_memory()  # before the first tensor: a training step's freed activations go back
    module = load_command(name)
    cli_values = vars(command_parser(name, module.Settings).parse_args(rest))
    settings = resolve(module.Settings, cli_values)
    try:
        return int(module.run(settings) or 0)
    except ModelUnavailable as error:  # any job that loads a model; the message says what to do
        raise SystemExit(f"pipesql {name}: {error}") from None


if __name__ == "__main__":
    sys.exit(main())

"""The command-line interface: one Typer module per command group."""

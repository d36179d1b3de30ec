"""One module per `ofa-mcu` subcommand: `add_arguments(parser)` and `run(args) -> int`."""

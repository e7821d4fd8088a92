"""One module per `nanoarb` subcommand: each defines add_arguments(parser) and run(args) -> int."""

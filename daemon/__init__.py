"""The process: CLI, config, hot loop, control plane, process tuning. Imports ``adapters`` and ``core``."""

"""The process: CLI, config, hot loop, control plane, tuning. Imports adapters and core."""

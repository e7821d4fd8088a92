"""The edges: market-data sources, order gateways and the exchange simulator. Imports ``core``."""

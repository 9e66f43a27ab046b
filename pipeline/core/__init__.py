"""The ground every layer stands on: value types, errors, run config, money, retry policy."""

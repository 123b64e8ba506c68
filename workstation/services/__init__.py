"""Use cases (import, inspect, review, rounds): synchronous, no Qt."""

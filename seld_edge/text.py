"""Wording shared by the commands' messages."""


def plural(count: int, noun: str) -> str:
    """ "1 CSV file", "2 CSV files": a count with its noun, plural (an added s) unless the count is one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"

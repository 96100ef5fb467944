"""Number formatting for cards and captions (pure, no Streamlit)."""

from __future__ import annotations


def human(n: float) -> str:
    """1234 -> '1.23 k', 9451000 -> '9.45 M'."""
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.3g} {suffix}"
    return f"{n:,.0f}"


def human_bytes(n: float) -> str:
    """Decimal units, like the rest of the app: 657240 -> '657 kB'."""
    for limit, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(n) >= limit:
            return f"{n / limit:.3g} {suffix}"
    return f"{n:,.0f} B"


def duration(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '42 s', or '?' when unknown."""
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"

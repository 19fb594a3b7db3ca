"""Seeds of a run's independent random streams (its units, classes, epochs or steps), derived from its seed."""


def stream_seed(seed: int, index: int) -> int:
    """The seed of stream `index` of a run seeded `seed`: streams are independent, so what one draws does not
    depend on which others are drawn, or in what order (an epoch resumed, a unit run by another process)."""
    return seed * 1_000_003 + index

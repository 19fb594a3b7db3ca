"""Synthesis by statistic matching (SRe2L and its successors): SYNTHESIZERS maps a name to a method of the
shared loop in dcond.synthesis.matching. A new method is one module here plus its name below."""

from dcond.registry import Registry

SYNTHESIZERS: Registry = Registry("synthesis method", {name: f"dcond.synthesis.{name}"
                                                        for name in ("classwise", "edc", "sre2l")})

"""Whether a model's config is the one saved activations were written with (caches and stores check this on load)."""

from __future__ import annotations

from interp_transformer.config import TransformerConfig


def config_differences(actual: TransformerConfig, saved: TransformerConfig) -> dict[str, tuple]:
    """Field -> (saved value, actual value) for every field where the two configs' ``to_dict`` differ."""
    mine, theirs = actual.to_dict(), saved.to_dict()
    return {key: (theirs.get(key), mine.get(key)) for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)}


def check_same_config(actual: TransformerConfig, saved: TransformerConfig, saved_fingerprint: str, what: str) -> None:
    """ValueError naming the differing fields when a model's config is not the one ``what`` was written with.

    The fingerprint decides (it covers every field, dtype included); the field list only explains.
    """
    if actual.fingerprint() == saved_fingerprint:
        return
    shown = ", ".join(f"{key}: saved {old!r}, model {new!r}" for key, (old, new) in config_differences(actual, saved).items())
    raise ValueError(
        f"{what} was written by a model with a different config (fingerprint {saved_fingerprint}, this model's is "
        f"{actual.fingerprint()}): {shown or 'fields differ in a way to_dict does not show'}"
    )

"""Reading a Ruby app's YAML configuration (resque-pool.yml, resque-scheduler's schedule) the way
Ruby's Psych reads it, with the errors both file kinds share."""
from __future__ import annotations

from typing import Any, Dict

from resque_compat.errors import ConfigurationError


def load_mapping(text: str, source: str, *, what: str, example: str) -> Dict[Any, Any]:
    """The top-level mapping of ``text`` (``{}`` for an empty file).

    ``what`` says what the mapping holds ("queue lists to process counts") and ``example`` shows
    one entry; both go into the error for a file that is not a mapping. ERB is refused: only Ruby
    evaluates it. Raises ConfigurationError naming ``source``.
    """
    import yaml  # PyYAML reads YAML 1.1 as Psych does; imported here, only the CLI needs it

    if "<%" in text:
        raise ConfigurationError(f"{source} uses ERB (<% ... %>), which only Ruby evaluates; "
                                 "write the values out (or generate the file before starting)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source} must map {what}, e.g. {example}")
    return data

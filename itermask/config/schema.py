"""The configuration's JSON schema: validation with one readable line per problem, and defaults.

Every optional setting has a ``default:`` in ``schema.yaml``; `validate_schema` fills the
missing ones in place while it validates (the `properties` keyword of the validator sets them,
jsonschema's documented recipe), as Snakemake's ``validate(config, schema, set_default=True)``
does. Defaults are never placed inside oneOf/anyOf branches, so only the settings of the
sections a config actually has (or that default to ``{}``) are filled.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator

import jsonschema
import yaml

from itermask.errors import ConfigError


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("itermask").joinpath("config/schema.yaml").read_text()


# libyaml's parser where PyYAML was built with it (the same result, about six times faster:
# every Snakemake process, each cluster job's included, reads the schema once)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema() -> dict:
    """The configuration's JSON schema (shipped inside the package); a fresh copy each call."""
    return yaml.load(_schema_text(), Loader=_LOADER)


def _fill_defaults(validator: Any, properties: dict, instance: Any, schema: dict) -> Iterator[Any]:
    """`properties` that first sets each missing property that has a default (a copy of it)."""
    if isinstance(instance, dict):
        for name, sub in properties.items():
            if "default" in sub and name not in instance:
                instance[name] = copy.deepcopy(sub["default"])
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


FillingValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": _fill_defaults})


def schema_defaults(config: dict | None = None) -> dict:
    """``config`` (default: an empty one) with every schema default filled in, in place and
    returned, its schema errors ignored: the settings a key left unset runs with (benchmarks and
    tests that call the package's functions, which carry no defaults of their own)."""
    config = {} if config is None else config
    for _ in FillingValidator(load_schema()).iter_errors(config):  # filling happens while validating
        pass
    return config


#: the schema's name patterns in words (a user reads these, not the regular expressions)
PATTERN_WORDS = {
    "\\A[A-Za-z0-9]+\\Z": "letters A-Z, a-z and digits 0-9 only",
    "\\A[A-Za-z0-9_]+\\Z": "letters, digits and '_' only",
    "^[a-z][a-z0-9_]*$": "lower-case letters, digits and '_', starting with a letter",
    "^(?!.*_vs_published$)[A-Za-z0-9_]+$": "letters, digits and '_' only, not ending in '_vs_published'",
}


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One readable line for a schema error: the key, what was expected, what was found."""
    key = _key_path(error)
    v = error.validator
    if v == "type":
        return f"config key '{key}': expected {error.validator_value}, got {type(error.instance).__name__} {error.instance!r}"
    if v == "enum":
        return f"config key '{key}': {error.instance!r} is not one of {error.validator_value}"
    if v == "required":
        return f"config key '{key}': {error.message}"
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"config key '{key}': {error.message}" + (f" (allowed keys: {', '.join(allowed)})" if allowed else "")
    if v == "pattern":
        allowed = PATTERN_WORDS.get(error.validator_value, f"the pattern {error.validator_value}")
        name = "a name" if error.relative_schema_path and "propertyNames" in error.relative_schema_path else "a value"
        return f"config key '{key}': {error.instance!r} is not allowed as {name} here: use {allowed}"
    if v in ("oneOf", "anyOf"):
        return f"config key '{key}': {error.instance!r} does not match any allowed form ({error.schema.get('description', 'see the schema')})"
    return f"config key '{key}': {error.message}"


def validate_schema(config: dict) -> dict:
    """Fill the schema's defaults into ``config`` (in place) and return it; raise ConfigError
    listing every schema violation (key path + expectation)."""
    errors = sorted(FillingValidator(load_schema()).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(_describe(e) for e in errors)
        raise ConfigError(f"invalid configuration ({len(errors)} problem(s)):\n  {lines}")
    return config

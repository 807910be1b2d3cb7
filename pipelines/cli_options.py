"""What the command modules share: each option's default read from its config dataclass (one
source), the options several commands take, and which options a user typed."""
from __future__ import annotations

import dataclasses
from typing import Any

import typer

from fsbir.retrieval.configs import CatalogWeights


def default(config: Any, name: str) -> Any:
    """The default of field `name` of a config dataclass (or of an instance's value)."""
    if not isinstance(config, type):
        return getattr(config, name)
    field = config.__dataclass_fields__[name]
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


# The two weights of the catalog's listed values, shared by index, eval and probe.
CATALOG_COLOUR_WEIGHT = typer.Option(default(CatalogWeights, "colour"), help="With the catalog's colours: what words that name a product's listed colour add to its score (the heads' guesses add 0.3). Above the type's weight, the asked colour wins where a kind holds few items in it.")
CATALOG_CATEGORY_WEIGHT = typer.Option(default(CatalogWeights, "category"), help="With the catalog's types: what words that name a product's listed type add to its score.")


def given(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The options the user typed (not their defaults), for settings that layer over a file."""
    typed = {"COMMANDLINE", "ENVIRONMENT"}  # by name: typer may carry its own copy of click's enum
    return {k: v for k, v in values.items() if getattr(ctx.get_parameter_source(k), "name", None) in typed}

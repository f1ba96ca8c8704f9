"""Reading settings from the environment and config files, with pydantic-settings.

One field per setting of :data:`graphile_py.settings.SETTINGS`, built from the settings'
own declarations (type, default, limits, environment names), so nothing is declared twice.
Imported by :func:`graphile_py.settings.load_settings` when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, create_model
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from graphile_py.errors import ConfigurationError
from graphile_py.settings import ENV_PREFIX, SETTINGS

__all__ = ["read_settings"]


class _ReaderBase(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        populate_by_name=True,
        pyproject_toml_table_header=("tool", "graphile-py"),
    )


@cache
def _reader() -> type[_ReaderBase]:
    """A pydantic-settings model with one field per setting, named as on :class:`Settings`."""
    fields: dict[str, Any] = {}
    for known in SETTINGS.values():
        spec, base = known.declared.spec, known.declared.base_type
        limits: dict[str, Any] = {"ge": spec.minimum, "gt": spec.above, "le": spec.maximum}
        if base is float:
            limits["allow_inf_nan"] = not spec.finite
        if spec.nonempty:
            limits["min_length"] = 1
        if known.env_names != (ENV_PREFIX + known.name.upper(),):
            # Other names than the prefix gives: the env source then reads these instead.
            limits["validation_alias"] = AliasChoices(*known.env_names)
        fields[known.name] = (
            known.declared.value_type,
            Field(
                default=known.declared.default,
                description=spec.help,
                **{key: value for key, value in limits.items() if value is not None},
            ),
        )
    model: type[_ReaderBase] = create_model("SettingsReader", __base__=_ReaderBase, **fields)
    return model


class _FileKeys:
    """Lets config files use a setting's key where it differs from its name (``schema``).

    (Only files get the key itself: as an environment variable, ``SCHEMA`` would be far
    too generic to mean the queue's schema.)
    """

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(super().__call__())  # type: ignore[misc]
        for known in SETTINGS.values():
            if known.key != known.name and known.key in data:
                # To a name the model accepts from any source: its first alias.
                data[known.env_names[0]] = data.pop(known.key)
        return data


class _TomlFile(_FileKeys, TomlConfigSettingsSource):
    pass


class _PyprojectTable(_FileKeys, PyprojectTomlConfigSettingsSource):
    pass


def read_settings(
    overrides: Mapping[str, Any] | None, *, toml_file: Path, pyproject: Path
) -> dict[str, Any]:
    """Every setting's value by name: ``overrides``, then environment, then the files."""

    class _FromFiles(_reader()):  # type: ignore[misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                _TomlFile(settings_cls, toml_file=toml_file),
                _PyprojectTable(settings_cls, toml_file=pyproject),
            )

    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    try:
        values: dict[str, Any] = _FromFiles(**given).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from exc
    except ValueError as exc:  # a malformed TOML file
        raise ConfigurationError(f"could not read the configuration: {exc}") from exc
    return values

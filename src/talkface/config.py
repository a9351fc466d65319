"""All of talkface's settings, in one tree.

Values come from, highest first: command-line options, environment variables
(``TALKFACE_`` prefix, ``__`` between levels: ``TALKFACE_TTS__SPEED=1.2``), a TOML file
(``--config`` or ``TALKFACE_CONFIG``), and the defaults below.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from talkface.api.settings import ServerSettings
from talkface.asr.base import ASRSettings
from talkface.cache.settings import CacheSettings
from talkface.degradation import DegradationSettings
from talkface.errors import ConfigError
from talkface.face.base import AnimatorSettings
from talkface.faq.base import FAQSettings
from talkface.llm.base import LLMSettings
from talkface.llm.routing import RoutingSettings
from talkface.output.mp4 import OutputSettings
from talkface.serving.settings import ServingSettings
from talkface.tts.base import TTSSettings
from talkface.vad.base import VADSettings


class LimitSettings(BaseModel):
    """Limits on what users may send.

    Attributes:
        max_text_chars: longest text one ``say`` or one chat message may have.
    """

    model_config = ConfigDict(extra="forbid")

    max_text_chars: int = Field(20_000, ge=1)


_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "talkface_config_file", default=None
)


class Settings(BaseSettings):
    """The root of the settings tree."""

    model_config = SettingsConfigDict(
        env_prefix="TALKFACE_", env_nested_delimiter="__", extra="forbid"
    )

    vad: VADSettings = Field(default_factory=VADSettings)
    asr: ASRSettings = Field(default_factory=ASRSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    tts: TTSSettings = Field(default_factory=TTSSettings)
    animator: AnimatorSettings = Field(default_factory=AnimatorSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    faq: FAQSettings = Field(default_factory=FAQSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    degradation: DegradationSettings = Field(default_factory=DegradationSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Where settings come from, highest first: CLI values, the environment, the TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **cli: Any) -> Settings:
    """Settings from CLI values (``cli``), the environment, a TOML file and the defaults.

    Args:
        config_file: a TOML file; defaults to ``$TALKFACE_CONFIG`` when that is set.
        cli: values given on the command line, nested as in the file
            (``tts={"speed": 1.2}``); they win over everything else.

    Raises:
        ConfigError: the file is missing or malformed, or a value is invalid.
    """
    config_file = config_file or os.environ.get("TALKFACE_CONFIG") or None
    path = Path(config_file).expanduser() if config_file else None
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**cli)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting {where}: {first['msg']}") from None
    finally:
        _CONFIG_FILE.reset(token)

r"""Scheduler configurations in the format Hugging Face diffusers reads and writes.

A diffusers scheduler keeps its constructor arguments in a frozen mapping, ``scheduler.config``,
and saves them as ``scheduler_config.json``: the arguments plus ``"_class_name"`` (the class)
and ``"_diffusers_version"``, written with sorted keys and an indent of 2. This module gives
sdelab's schedulers the same behaviour without importing diffusers and without any network
access:

* ``config``: a `FrozenConfig` (a read-only dict that also allows ``config.sigma_max``);
* ``save_pretrained(dir)`` / ``save_config(dir)``: write ``dir/scheduler_config.json``;
* ``from_pretrained(dir, subfolder=None, **overrides)``: read it back (local folders only);
* ``from_config(config, **overrides)``: build from a mapping (ours, diffusers', or a plain dict).

Keys that are not constructor arguments are never silently dropped or misread: unknown public
keys are kept in ``config`` *and* reported with a `UserWarning` (diffusers logs the same
warning and keeps them too), other private keys are kept silently. The file's metadata
(``_class_name``, ``_diffusers_version``, ``_sdelab_version``) is not kept: every save writes it
afresh, so a saved and reloaded scheduler has an equal ``config``. A ``"_class_name"`` naming a
different class is reported with a warning.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["DIFFUSERS_FORMAT_VERSION", "ConfigMixin", "FrozenConfig"]

#: The diffusers release whose ``scheduler_config.json`` format sdelab writes (and was tested
#: against); written as ``"_diffusers_version"`` so diffusers reads the file as its own.
DIFFUSERS_FORMAT_VERSION = "0.42.1"

CONFIG_NAME = "scheduler_config.json"

# Keys describing who wrote a file rather than the configuration; not kept in ``config``.
_METADATA = ("_class_name", "_diffusers_version", "_sdelab_version")

# Keyword arguments of diffusers' ``from_pretrained`` that concern downloading from the Hub.
# sdelab never downloads; they are accepted so that code written for diffusers runs unchanged,
# and have no effect on a local folder.
_HUB_KWARGS = frozenset(
    {
        "cache_dir",
        "force_download",
        "local_files_only",
        "proxies",
        "resume_download",
        "revision",
        "token",
        "use_auth_token",
        "user_agent",
        "output_loading_info",
    }
)


class FrozenConfig(dict):
    """A read-only ``dict`` whose entries are also attributes (``config.sigma_max``).

    Like diffusers' ``FrozenDict``: item and attribute assignment, ``pop``, ``update``,
    ``setdefault`` and deletion raise. Build a changed scheduler with
    ``Scheduler.from_config(config, key=value)`` instead.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no entry {name!r}; entries: {sorted(self)}") from None

    def _frozen(self, *args, **kwargs):
        raise TypeError(
            "a scheduler's config is read-only; build a new scheduler with "
            "Scheduler.from_config(scheduler.config, name=value)"
        )

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = _frozen
    pop = popitem = update = setdefault = clear = _frozen

    def __reduce__(self):
        return (FrozenConfig, (dict(self),))


class ConfigMixin:
    """Config handling shared by sdelab's diffusers-compatible schedulers.

    A subclass calls ``self._register_config(**arguments)`` in its constructor with every
    constructor argument, as given (values are stored unchanged, so an ``int`` stays an
    ``int`` in the saved JSON as it does in diffusers).
    """

    config_name = CONFIG_NAME

    # --- the config -----------------------------------------------------------------------
    def _register_config(self, **arguments: Any) -> None:
        self._config = dict(arguments)
        self._hidden: dict[str, Any] = {}

    @property
    def config(self) -> FrozenConfig:
        """The constructor arguments (plus any kept extra keys) as a read-only mapping."""
        return FrozenConfig({**self._config, **self._hidden})

    @classmethod
    def _init_keys(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters
        return [k for k, p in params.items() if k != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]

    # --- saving ---------------------------------------------------------------------------
    def to_json_string(self) -> str:
        """The ``scheduler_config.json`` text diffusers would write for this configuration."""
        from .. import __version__

        data = {
            **self._hidden,
            **self._config,
            "_class_name": type(self).__name__,
            "_diffusers_version": DIFFUSERS_FORMAT_VERSION,
            "_sdelab_version": __version__,
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def save_config(self, save_directory: str | os.PathLike, push_to_hub: bool = False) -> None:
        """Write ``save_directory/scheduler_config.json`` (the folder is created if needed)."""
        if push_to_hub:
            raise NotImplementedError(
                "push_to_hub=True is not supported: sdelab never uses the network; save locally "
                "and upload with huggingface_hub if you need to"
            )
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise NotADirectoryError(
                f"save_directory must be a folder, got the existing file {save_directory!r}"
            )
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, self.config_name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False) -> None:
        """Same as `save_config` (diffusers' name for it on schedulers)."""
        self.save_config(save_directory, push_to_hub=push_to_hub)

    # --- loading --------------------------------------------------------------------------
    @classmethod
    def load_config(
        cls, pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None
    ) -> dict[str, Any]:
        """Read ``scheduler_config.json`` from a local folder (or its ``subfolder``) as a dict.

        ``pretrained_model_name_or_path`` may also be the path of the JSON file itself.
        """
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isfile(path):
            file = path
        else:
            folder = os.path.join(path, subfolder) if subfolder else path
            file = os.path.join(folder, cls.config_name)
            if not os.path.isdir(folder):
                raise OSError(
                    f"pretrained_model_name_or_path must be a local folder (sdelab never downloads), "
                    f"got {path!r}{f' with subfolder {subfolder!r}' if subfolder else ''}, which "
                    "does not exist; download a Hub repository first, e.g. with "
                    "huggingface_hub.snapshot_download, and pass its folder"
                )
            if not os.path.isfile(file):
                raise OSError(f"no file named {cls.config_name} in the folder {folder!r}")
        with open(file, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{file!r} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{file!r} must hold a JSON object, got {type(data).__name__}")
        return data

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        subfolder: str | None = None,
        return_unused_kwargs: bool = False,
        **kwargs: Any,
    ):
        """Build a scheduler from ``scheduler_config.json`` in a local folder.

        Args:
            pretrained_model_name_or_path: a folder holding ``scheduler_config.json`` (for
                example one written by diffusers' or sdelab's ``save_pretrained``, or a
                downloaded pipeline repository with ``subfolder="scheduler"``).
            subfolder: the subfolder of that folder that holds the file.
            return_unused_kwargs: also return the keys that are not constructor arguments.
            **kwargs: constructor arguments that override the file's values. diffusers' Hub
                options (``cache_dir``, ``revision``, ``local_files_only``, ...) are accepted
                and ignored: sdelab reads local files only.
        """
        for k in [k for k in kwargs if k in _HUB_KWARGS]:
            kwargs.pop(k)
        config = cls.load_config(pretrained_model_name_or_path, subfolder=subfolder)
        return cls.from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], return_unused_kwargs: bool = False, **kwargs: Any
    ):
        """Build a scheduler from a config mapping: ``other.config`` (sdelab's or diffusers'),
        or a dict such as `load_config` returns.

        ``kwargs`` override entries of ``config`` and must be constructor arguments. Keys
        listed in diffusers' ``"_use_default_values"`` take this class's defaults (they are the
        same as diffusers'). Unknown public keys are kept in ``config`` and reported with a
        `UserWarning`; private keys (``"_..."``) are kept silently.
        """
        if isinstance(config, str | os.PathLike):
            raise TypeError(
                f"config must be a mapping (e.g. scheduler.config), got the path {config!r}; "
                f"use {cls.__name__}.from_pretrained(path) to read a saved configuration"
            )
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, got {type(config).__name__}")
        keys = cls._init_keys()
        bad = sorted(k for k in kwargs if k not in keys)
        if bad:
            raise TypeError(
                f"{cls.__name__}.from_config got unexpected keyword arguments {bad}; "
                f"expected some of {keys}"
            )
        defaults_used = set(config.get("_use_default_values", ()))
        init: dict[str, Any] = {}
        hidden: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        for k, v in config.items():
            if k == "_use_default_values" or k in defaults_used:
                continue
            if k in keys:
                init[k] = v
            elif k.startswith("_"):
                hidden[k] = v
            else:
                unknown[k] = v
        saved_by = hidden.get("_class_name", cls.__name__)
        if saved_by != cls.__name__:
            warnings.warn(
                f"the config was saved by {saved_by!r} and is loaded into {cls.__name__}; "
                f"only the keys {sorted(init)} are used",
                UserWarning,
                stacklevel=2,
            )
        if unknown:
            warnings.warn(
                f"the config entries {unknown} are not arguments of {cls.__name__} "
                f"(expected some of {keys}); they are kept in .config but not used",
                UserWarning,
                stacklevel=2,
            )
        init.update(kwargs)
        obj = cls(**init)
        for k in _METADATA:  # written afresh by every save
            hidden.pop(k, None)
        obj._hidden = {**hidden, **unknown}
        if return_unused_kwargs:
            return obj, dict(unknown)
        return obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config.items())})"

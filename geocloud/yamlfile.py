"""Read a YAML file into a pydantic model, turning every problem into one clear ConfigError.

Shared by the layer catalog, the agency registry and the ETL pipeline files so that all of them
report a bad file the same way: the file, the key path, what is wrong and how to fix it.
"""

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from geocloud.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", where=str(path), fix="check the path") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start})", where=str(path), fix="save the file as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", where=where, fix="fix the YAML syntax") from None


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model accepts at ``loc`` (used to suggest a fix for an unknown key)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        ann = info.annotation
        for arg in (ann, *getattr(ann, "__args__", ())):
            inner = getattr(arg, "__args__", ())
            cands = [arg, *inner]
            found = next((c for c in cands if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if found:
                current = found
                break
        else:
            return []
    fields = getattr(current, "model_fields", {})
    return [info.alias or name for name, info in fields.items()]


def explain(exc: ValidationError, model: type[BaseModel], where: str) -> ConfigError:
    """One ConfigError listing every problem pydantic found, each with its key path."""
    lines = []
    for err in exc.errors():
        key = _key_path(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, err["loc"])
            close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            lines.append(f"unknown key {key!r}{hint}")
        elif err["type"] == "missing":
            lines.append(f"missing required key {key!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"key {key!r}: {msg}")
    what = lines[0] if len(lines) == 1 else "\n  - " + "\n  - ".join(lines)
    return ConfigError(what, where=where, fix="correct the file; see the examples in the same folder")


def load_model(path: Path, model: type[M], data: Any = None) -> M:
    data = read_yaml(path) if data is None else data
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys at the top level", where=str(path))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise explain(exc, model, str(path)) from None

"""The default suite: 30 production operators and their 440 hot shapes (``operators.json``).

A suite file has the catalog's schema: ``{"operators": [{"name", "shapes": [{"id", "init_kwargs",
"input_kwargs", "description", ...}]}]}``. Any other suite (from ``solbench profile shapes``)
uses the same schema; operator-level fields it leaves out (importance, dtypes, origin) are taken
from the catalog.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from solbench.core.spec import Shape

PROVENANCE_FIELDS = ("source_framework", "tensor_parallel_size", "call_count", "total_duration_us",
                     "deployed_us", "source_kernel_name")


class CatalogError(ValueError):
    pass


@functools.lru_cache(maxsize=None)
def _load_default() -> dict:
    with resources.files(__package__).joinpath("operators.json").open("r", encoding="utf-8") as f:
        return json.load(f)


def load_suite(path: str | Path | None = None) -> dict:
    """The raw suite: the packaged catalog, or a suite file merged over it."""
    base = _load_default()
    if path is None:
        return base
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"suite file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise CatalogError(f"suite file {path} is not valid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise CatalogError(f"suite file {path} is not a JSON text file (byte {e.start} is not UTF-8)") from None
    if not isinstance(data, dict) or not isinstance(data.get("operators"), list):
        raise CatalogError(f"suite file {path} must be an object with an 'operators' list")
    known = {o["name"]: o for o in base["operators"]}
    merged = []
    for i, op in enumerate(data["operators"]):
        name = op.get("name") if isinstance(op, dict) else None
        if name not in known:
            raise CatalogError(f"suite file {path}: operators[{i}] names {name!r}, which is not a catalog "
                               f"operator (known: {', '.join(sorted(known))})")
        if not isinstance(op.get("shapes"), list) or not op["shapes"]:
            raise CatalogError(f"suite file {path}: operator {name!r} has no 'shapes' list")
        entry = {**known[name], **{k: v for k, v in op.items() if k != "shapes"}}
        shapes = []
        for j, s in enumerate(op["shapes"]):
            if not isinstance(s, dict) or not isinstance(s.get("input_kwargs") or s.get("init_kwargs"), dict):
                raise CatalogError(f"suite file {path}: {name} shapes[{j}] needs 'input_kwargs' (an object)")
            shapes.append({"id": s.get("id", j), **s})
        entry["shapes"] = shapes
        merged.append(entry)
    return {**{k: v for k, v in base.items() if k != "operators"},
            **{k: v for k, v in data.items() if k != "operators"}, "operators": merged}


def operator_entries(path: str | Path | None = None) -> dict[str, dict]:
    return {o["name"]: o for o in load_suite(path)["operators"]}


def shape_weight(raw: Mapping[str, Any]) -> float:
    """Production weight of a shape: its total traced GPU time where recorded, else its call
    count, else 1 (equal weights)."""
    for key in ("total_duration_us", "call_count"):
        v = raw.get(key)
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return 1.0


def make_shapes(entry: Mapping[str, Any]) -> list[Shape]:
    shapes = []
    for raw in entry.get("shapes", []):
        init = raw.get("init_kwargs") or {}
        inp = raw.get("input_kwargs") or {}
        shapes.append(Shape(
            op=entry["name"], id=raw.get("id", len(shapes)), params={**init, **inp},
            description=raw.get("description", ""), init_kwargs=raw.get("init_kwargs"),
            input_kwargs=raw.get("input_kwargs"),
            provenance={k: raw[k] for k in PROVENANCE_FIELDS if k in raw},
            weight=shape_weight(raw)))
    return shapes


def catalog_importance() -> dict[str, float]:
    """Each catalog operator's importance: its share of GPU time over the production profiles
    that run it (``importance_num_profiles`` of them, not all). Being shares of different sets of
    profiles, they do not sum to 1 (1.095 for the packaged catalog)."""
    return {o["name"]: float(o["importance"]) for o in _load_default()["operators"] if o.get("importance") is not None}


def catalog_summary() -> dict:
    data = _load_default()
    return {"operators": len(data["operators"]), "shapes": sum(len(o["shapes"]) for o in data["operators"]),
            "num_profiles": data.get("num_profiles")}

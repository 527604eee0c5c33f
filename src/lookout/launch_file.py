"""Read ROS 2 YAML launch files (`launch/*.launch.yaml`) without the `launch` package.

`ros2 launch` runs these files on machines with a ROS install; `lookout run` reads the same files
with this parser and composes the nodes in one process, so both entry points start the same
executables with the same parameter files and remappings. Only the subset of the YAML launch
format that Lookout's files use is supported (`arg`, `node` with `param`/`remap`, the
substitutions `$(var)`, `$(env)` and `$(find-pkg-share)`); anything else is an error, never ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lookout.paths import repo_root

_SUBST = re.compile(r"\$\((\S+)((?:\s+[^)]*)?)\)")


class LaunchFileError(ValueError):
    """The launch file uses something this reader does not understand, or lacks a value."""


@dataclass
class NodeSpec:
    package: str
    executable: str
    name: str | None = None
    namespace: str | None = None
    param_files: list[Path] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    remaps: list[tuple[str, str]] = field(default_factory=list)

    def ros_args(self) -> list[str]:
        """The `--ros-args` a launch system would pass to this node."""
        args = ["--ros-args"]
        if self.name:
            args += ["-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for f in self.param_files:
            args += ["--params-file", str(f)]
        for k, v in self.params.items():
            text = yaml.safe_dump(v, default_flow_style=True).strip()
            text = text[:-3].rstrip() if text.endswith("\n...") else text  # a scalar's document-end marker
            args += ["-p", f"{k}:={text}"]
        for a, b in self.remaps:
            args += ["-r", f"{a}:={b}"]
        return args


@dataclass
class LaunchDescription:
    path: Path
    args: dict[str, str | None]
    nodes: list[NodeSpec]


def _substitute(value: Any, variables: dict[str, str | None]) -> Any:
    if not isinstance(value, str):
        return value

    def repl(m: re.Match[str]) -> str:
        kind, rest = m.group(1), m.group(2).strip()
        if kind == "var":
            if rest not in variables:
                raise LaunchFileError(f"unknown launch argument $(var {rest})")
            val = variables[rest]
            if val is None:
                raise LaunchFileError(f"launch argument '{rest}' has no default: pass {rest}:=VALUE")
            return val
        if kind == "env":
            name, _, default = rest.partition(" ")
            if name == "LOOKOUT_ROOT" and name not in os.environ:
                return str(repo_root())
            if name in os.environ:
                return os.environ[name]
            if default:
                return default
            raise LaunchFileError(f"environment variable {name} is not set")
        if kind == "find-pkg-share":
            from ament_index_python.packages import get_package_share_directory

            return get_package_share_directory(rest)
        raise LaunchFileError(f"substitution $({kind} ...) is not supported by lookout's launch reader")

    return _SUBST.sub(repl, value)


def load_launch_file(path: str | Path, overrides: dict[str, str] | None = None) -> LaunchDescription:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"launch file {path} not found")
    doc = yaml.safe_load(path.read_text()) or {}
    entries = doc.get("launch")
    if not isinstance(entries, list):
        raise LaunchFileError(f"{path}: top level must be 'launch: [...]'")
    overrides = dict(overrides or {})
    variables: dict[str, str | None] = {}
    nodes: list[NodeSpec] = []
    for entry in entries:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise LaunchFileError(f"{path}: each entry must be a single-key mapping, got {entry!r}")
        (kind, body), = entry.items()
        if kind == "arg":
            name = body["name"]
            default = body.get("default")
            variables[name] = overrides.pop(name) if name in overrides else (
                None if default is None else str(_substitute(default, variables)))
        elif kind == "node":
            unknown = set(body) - {"pkg", "exec", "name", "namespace", "param", "remap", "output"}
            if unknown:
                raise LaunchFileError(f"{path}: node keys {sorted(unknown)} are not supported")
            spec = NodeSpec(package=body["pkg"], executable=body["exec"], name=body.get("name"),
                            namespace=_substitute(body.get("namespace"), variables))
            for p in body.get("param", []) or []:
                if "from" in p:
                    spec.param_files.append(Path(_substitute(p["from"], variables)))
                elif "name" in p:
                    spec.params[p["name"]] = yaml.safe_load(str(_substitute(p["value"], variables)))
                else:
                    raise LaunchFileError(f"{path}: param entry {p!r} needs 'from' or 'name'/'value'")
            for r in body.get("remap", []) or []:
                spec.remaps.append((_substitute(r["from"], variables), _substitute(r["to"], variables)))
            nodes.append(spec)
        else:
            raise LaunchFileError(f"{path}: '{kind}' entries are not supported by lookout's launch reader")
    if overrides:
        raise LaunchFileError(f"unknown launch arguments {sorted(overrides)}; this file declares {sorted(variables)}")
    return LaunchDescription(path=path, args=variables, nodes=nodes)

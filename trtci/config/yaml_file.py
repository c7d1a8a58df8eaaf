"""Reading trtci.yml safely: bounded size, UTF-8 only, a key given twice or a lone surrogate refused, nesting bounded.

PyYAML's safe loader with two more checks; trtci.config validates what it returns.
"""

from __future__ import annotations

from pathlib import Path

from trtci.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a trtci.yml is a few kB; parsing a huge one would take minutes and gigabytes


def load_yaml(path: Path) -> dict:
    import yaml

    if path.exists() and not path.is_file():  # reading a FIFO would wait for a writer forever
        raise ConfigError(f"{path}: not a regular file; pass a trtci.yml file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror}); pass an existing trtci.yml") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the config is over {MAX_CONFIG_BYTES >> 20} MiB; a trtci.yml needs a few kB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: the config is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())
    except RecursionError:  # PyYAML builds nested collections recursively
        raise ConfigError(
            f"{path}: the config nests lists or mappings too deeply; a trtci.yml needs a few levels"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(e, 'problem', e)}") from e
    if data is None:
        raise ConfigError(f"{path}: the config is empty; it needs at least models: [{{path: model.onnx}}]")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (models:, backends:, ...)")
    return data


def _unique_key_loader() -> type:
    """A safe YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last one silently) and
    an escape that is no character (a lone surrogate)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
            seen = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key}' is given twice in one mapping", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_scalar(self, node: yaml.ScalarNode) -> str:
            value = super().construct_scalar(node)
            try:  # "\ud800" escapes a half of a UTF-16 pair: no character, and no database or file can hold it
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                problem = f"{value[e.start]!r} is half of a UTF-16 pair, not a character"
                raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None
            return value

    return UniqueKeyLoader

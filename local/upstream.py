"""Write this recipe as an asteroid recipe folder, ready for asteroid's ``egs/``.

Usage:

    python -m local.upstream --conf conf/paper_best.yml --out upstream/egs/wsj0-2mix/ConvTasNetVariants --force
    python -m local.upstream ... --check        # exit 1 if a folder written earlier is not what this writes now
    python -m local.upstream ... --link-utils   # utils/ as a symlink to ../../wham/ConvTasNet/utils,
                                                # like the other recipes inside asteroid's tree
    python -m local.upstream --convert-model exp/wsj0-2mix/paper_best/export/model.pth publish/model.pth
                                                # our export -> a model.pth that plain asteroid loads

How the folder is assembled. Nothing of the recipe is written twice: the folder runs
this recipe's own code, copied, behind a thin layer of asteroid conventions.

    local/*.py            byte-for-byte copies of this repository's ``local/`` modules: the
                          import closure of the two entry points below, found by reading their
                          ``import`` statements (``ast``, also those inside functions), so a new
                          module is picked up by itself. An import of another folder of this
                          repository (``egs/``, ``tools/`` ...) fails the generation; the test
                          checks that the rest is the standard library or installed packages.
    local/conf.yml        the resolved config of ``--conf`` (``local.config.load_config``), with
                          the schema's comments: asteroid's two-level layout, every second-level
                          key a ``train.py`` flag.
    train.py, eval.py     entry points that translate asteroid's conventions (``--exp_dir``,
                          ``--corpus_dir``, one flag per conf.yml key, ``--n_save_ex``) into the
                          command lines of ``local.train`` / ``local.evaluate`` + ``local.export``
                          and call their ``main``; eval.py names the published model
                          ``ConvTasNet`` with asteroid's dataset and licence fields
                          (``local.publish``) and writes asteroid's ``final_metrics.json`` /
                          ``all_metrics.csv`` beside ``eval/``.
    run.sh                stages 0 json metadata, 1 train.py, 2 eval.py; options through
                          utils/parse_options.sh.
    local/prepare_data.sh, local/preprocess_wsj0mix.py, utils/{parse_options,prepare_python_env}.sh,
    README.md             asteroid's own scripts and the recipe README.

The glue files are kept as they are in ``local/upstream_glue/`` (``@@NAME@@`` in ``run.sh``
and ``README.md`` is filled here); this module only assembles. ``tests/test_upstream.py``
runs the folder and this recipe on the same micro corpus and checks that they give the same
weights and per-utterance metrics, and that ``upstream/`` is what this writes now.
A run of the folder writes ``exp/<tag>/{conf.yml, best_k_models.json, best_model.pth, eval/,
final_metrics.json, all_metrics.csv, publish_dir/{model.pth, README.md, recipe_name.txt}}``.

    this repository                          asteroid recipe (generated)
    ---------------------------------------  ------------------------------------------------
    run.sh --stage 0 (egs/<corpus>/prepare)  run.sh stage 0: local/prepare_data.sh (json only;
                                             mixtures from MERL's scripts or our prepare.sh)
    conf/<experiment>.yml                    local/conf.yml (resolved: every key, one flag each)
    python -m local.train --data-dir D       train.py --corpus_dir D (--exp_dir exp/<tag>)
    python -m local.evaluate, local.export   eval.py -> eval/, publish_dir/ (model named ConvTasNet)
    exp/<corpus>/<tag>/                      exp/<tag>/
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Iterable, Optional

import yaml

from local.publish import asteroid_package  # noqa: F401  (the --convert-model rule; callers import it here)

DEFAULT_CONF = "conf/paper_best.yml"
DEFAULT_OUT = "upstream/egs/wsj0-2mix/ConvTasNetVariants"
REPO = Path(__file__).resolve().parents[1]
GLUE = Path(__file__).resolve().with_name("upstream_glue")
# glue file -> its place in the recipe folder
GLUE_FILES = {"run.sh": "run.sh", "train.py": "train.py", "eval.py": "eval.py", "README.md": "README.md",
              "prepare_data.sh": "local/prepare_data.sh", "preprocess_wsj0mix.py": "local/preprocess_wsj0mix.py",
              "parse_options.sh": "utils/parse_options.sh", "prepare_python_env.sh": "utils/prepare_python_env.sh"}
TEMPLATES = ("run.sh", "README.md")  # glue with @@NAME@@ fields
ENTRY_POINTS = ("train.py", "eval.py")  # the import closure starts from these
EXECUTABLE = {"run.sh", "local/prepare_data.sh", "utils/parse_options.sh", "utils/prepare_python_env.sh"}
UTILS_LINK = "../../wham/ConvTasNet/utils"  # where the other recipes' utils/ symlinks point


class UpstreamError(ValueError):
    """A folder that cannot be generated (or replaced); the message says why."""


# --------------------------------------------------------------------------------------------
# The import closure
# --------------------------------------------------------------------------------------------
def module_file(name: str, root: Path = REPO) -> Optional[Path]:
    """``local.x`` -> ``root/local/x.py`` (or ``.../x/__init__.py``); None if there is no such file."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, package: str) -> list[tuple[str, list[str]]]:
    """``(module, [names imported from it])`` of every import in ``path``, at any depth (functions too).

    Relative imports are resolved against ``package``; ``importlib.import_module("x")`` with a
    literal name counts as ``import x``.
    """
    out = []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            out.append((module, [alias.name for alias in node.names]))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append((node.args[0].value, []))
    return out


def import_closure(entry_files: Iterable[Path], root: Path = REPO, package: str = "local"):
    """(modules of ``package`` that ``entry_files`` need, sorted; other top-level names they import).

    Follows every import of ``package`` from the entry files, then from each module found.
    A ``package`` module that is imported but has no file is an :class:`UpstreamError`.
    """
    todo = [(Path(p), "") for p in entry_files]
    modules: set[str] = set()
    external: set[str] = set()
    while todo:
        path, name = todo.pop()
        parent = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for module, names in _imports(path, parent):
            top = module.split(".")[0]
            if top != package:
                external.add(top)
                continue
            wanted = [module] + [f"{module}.{n}" for n in names if module_file(f"{module}.{n}", root)]
            parts = module.split(".")
            wanted += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
            for mod in wanted:
                if mod in modules:
                    continue
                file = module_file(mod, root)
                if file is None:
                    raise UpstreamError(f"{path} imports {mod}, which has no file under {root}")
                modules.add(mod)
                todo.append((file, mod))
    external -= {"__future__", *sys.stdlib_module_names}
    return sorted(modules), sorted(external)


def check_self_contained(external: Iterable[str], root: Path = REPO) -> None:
    """Refuse imports of this repository's other top-level folders (``egs``, ``tools`` ...)."""
    ours = sorted(n for n in external if (root / n).is_dir() or (root / f"{n}.py").is_file())
    if ours:
        raise UpstreamError(f"the copied modules import {', '.join(ours)} from this repository, which the "
                            "asteroid folder does not have: move what they need into local/")


# --------------------------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------------------------
def _schema_comments() -> dict[str, str]:
    """``key -> comment`` of the schema's lines in local/config.py (``"n_filters": 512,  # N``)."""
    from local import config

    text = Path(config.__file__).read_text()
    text = text[text.index("DEFAULTS"):]
    text = text[:text.index("\n}\n")]
    return {m[1]: m[2].strip() for m in re.finditer(r'^\s+"(\w+)": .*?#\s*(.+)$', text, re.M)}


def conf_yaml(conf: dict, source: str) -> str:
    """The generated ``local/conf.yml``: the resolved config, one commented line a key."""
    keys = [k for values in conf.values() for k in values]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise UpstreamError(f"keys {twice} are in two sections: asteroid's flags need unique second-level keys")
    comments = _schema_comments()
    lines = [f"# Generated from {source} by `python -m local.upstream` (Conv-TasNet recipe): its resolved config.",
             "# Every second-level key is a train.py flag: `python train.py --lr 5e-4 --who_is_pinv encoder`."]
    for section, values in conf.items():
        lines.append(f"{section}:")
        for key, value in values.items():
            line = "  " + yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False, width=1000).strip()
            lines.append(f"{line:<30} # {comments[key]}" if key in comments else line)
    return "\n".join(lines) + "\n"


def _fill(template: str, values: dict) -> str:
    for key, value in values.items():
        template = template.replace(f"@@{key}@@", str(value))
    assert "@@" not in template, template[template.index("@@") - 40:template.index("@@") + 40]
    return template


def recipe_files(conf: dict, source: str, recipe_name: str) -> dict[str, bytes]:
    """Relative path -> content of every file of the generated recipe (utils/ included), sorted."""
    modules, external = import_closure([GLUE / name for name in ENTRY_POINTS])
    check_self_contained(external)
    files = {rel: (GLUE / name).read_bytes() for name, rel in GLUE_FILES.items()}
    files.update({str(module_file(m).relative_to(REPO)): module_file(m).read_bytes() for m in modules})
    files["local/conf.yml"] = conf_yaml(conf, source).encode()
    values = {"SOURCE": source, "RECIPE": recipe_name, "N_SRC": conf["data"]["n_src"],
              "MODULES": ", ".join(f"`{m.rpartition('.')[2]}`" for m in modules if m != "local"),
              "IMPORTS": ", ".join(f"`{n}`" for n in external)}
    for rel in TEMPLATES:
        files[rel] = _fill(files[rel].decode(), values).encode()
    return dict(sorted(files.items()))


def differences(out: str | os.PathLike, files: dict[str, bytes]) -> list[str]:
    """What differs between folder ``out`` and ``files``: ``<path>: missing | differs | not generated``."""
    out = Path(out)
    diffs = [f"{rel}: missing" if not (out / rel).is_file() else f"{rel}: differs"
             for rel, data in files.items() if not (out / rel).is_file() or (out / rel).read_bytes() != data]
    if out.is_dir():
        diffs += [f"{p.relative_to(out)}: not generated" for p in sorted(out.rglob("*"))
                  if p.is_file() and "__pycache__" not in p.parts and str(p.relative_to(out)) not in files]
    return diffs


def write_recipe(conf: dict, out: str | os.PathLike, source: str = "a config", recipe_name: Optional[str] = None,
                 link_utils: bool = False, force: bool = False) -> list[Path]:
    """Write the asteroid-layout recipe folder ``out``; returns the files written.

    An existing folder is replaced only if it holds nothing but generated files
    (no ``data/``, ``exp/`` or ``logs/`` from a run), or with ``force``. The new
    folder is built next to it and swapped in, so a failure leaves the old one.
    """
    out = Path(out)
    recipe_name = recipe_name or f"{out.parent.name}/{out.name}"
    files = recipe_files(conf, source, recipe_name)
    if out.exists() and not force:
        ours = set(files) | {str(Path(rel).parent) for rel in files}
        foreign = [str(p.relative_to(out)) for p in out.rglob("*")
                   if str(p.relative_to(out)) not in ours and "__pycache__" not in p.parts]
        if foreign:
            raise UpstreamError(f"{out} holds files this command did not write ({', '.join(sorted(foreign)[:5])}"
                                f"{', ...' if len(foreign) > 5 else ''}): pass --force to replace the folder")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    written = []
    for rel, data in files.items():
        if link_utils and rel.startswith("utils/"):
            continue
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if rel in EXECUTABLE else 0o644)
        written.append(out / rel)
    if link_utils:
        (tmp / "utils").symlink_to(UTILS_LINK)
    if out.is_symlink() or out.is_file():
        out.unlink()
    elif out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return written


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", default=DEFAULT_CONF, help=f"experiment config to translate [{DEFAULT_CONF}]")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"recipe folder to write [{DEFAULT_OUT}]")
    p.add_argument("--recipe-name", default=None,
                   help="name written to publish_dir/recipe_name.txt [<dataset>/<system> from --out]")
    p.add_argument("--link-utils", action="store_true",
                   help=f"make utils/ a symlink to {UTILS_LINK} (inside asteroid's tree) instead of copies")
    p.add_argument("--force", action="store_true", help="replace --out even if it holds other files")
    p.add_argument("--check", action="store_true",
                   help="write nothing: list what differs between --out and what would be written (exit 1 if any)")
    p.add_argument("--convert-model", nargs=2, metavar=("IN", "OUT"), default=None,
                   help="instead: rewrite our model.pth IN as an asteroid ConvTasNet package OUT")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.convert_model:
        import torch

        src, dst = args.convert_model
        package = torch.load(src, map_location="cpu", weights_only=True)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        torch.save(asteroid_package(package), dst)
        print(f"{dst}: loads with asteroid.models.BaseModel.from_pretrained({dst!r})")
        return 0
    from local.config import ConfigError, load_config

    out = Path(args.out)
    try:
        conf = load_config(args.conf)
        if args.check:
            diffs = differences(out, recipe_files(conf, args.conf, args.recipe_name or f"{out.parent.name}/{out.name}"))
            for line in diffs:
                print(f"{out}/{line}")
            if diffs:
                print(f"stale: python -m local.upstream --conf {args.conf} --out {out} --force", file=sys.stderr)
            return 1 if diffs else 0
        written = write_recipe(conf, out, source=args.conf, recipe_name=args.recipe_name,
                               link_utils=args.link_utils, force=args.force)
    except (ConfigError, UpstreamError) as err:
        raise SystemExit(f"error: {err}")
    print(f"wrote {len(written)} files to {out}")
    print(f"try it: cd {out} && ./run.sh --help  (inside asteroid's tree: egs/<dataset>/<system>/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

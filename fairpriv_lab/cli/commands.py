"""The ``fairpriv-lab`` command line: a thin face over :mod:`fairpriv_lab.experiment`.

Subcommands: ``audit`` (one experiment, every config field as an option), ``demo`` (the
README's main job), ``datasets list|download NAME``, ``cache list|clear``. Bad options exit
with status 2 and a message naming the option and its allowed values; errors while running
exit with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .._core.exceptions import ConfigError, FairPrivError
from ..experiment import config as C

__all__ = ["main", "build_parser"]


def _int_or_none(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def _float_or_none(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _bool(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return words[text.lower()]


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _choice_list(choices: Sequence[str], noun: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"invalid {noun} {bad[0] if bad else text!r} (choose from {', '.join(choices)}, comma-separated)")
        return names

    return parse


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a JSON value, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), json.loads(v)
    except json.JSONDecodeError:
        return k.strip(), v


def _option_type(p: C.Param, key: str) -> Callable[[str], Any]:
    if p.kind == "int":
        return _int_or_none if p.optional else int
    if p.kind == "float":
        return _float_or_none if p.optional else float
    if p.kind == "ints":
        return _int_list
    if p.kind == "bool":
        return _bool
    if p.kind == "choices":
        return _choice_list(p.choices or (), key.rsplit(".", 1)[-1].removesuffix("s"))
    return str


def _options() -> list[tuple[str, str, Callable[[str], Any], Sequence[str] | None, str]]:
    """(config key, option, type, choices, help) of every schema field with an option.

    Generated from :func:`fairpriv_lab.experiment.config.schema`; ``data.options`` (a mapping)
    is set with ``--data-option KEY=VALUE`` instead.
    """
    out = []
    for key, p in C.schema().items():
        if p.kind == "mapping":
            continue
        flag = p.flag or "--" + key.rsplit(".", 1)[-1].replace("_", "-")
        choices = p.choices if p.kind == "choice" else None
        out.append((key, flag, _option_type(p, key), choices, p.help))
    return out


_OPTIONS = _options()  # as declared at import (the schema can grow at run time in tests)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``fairpriv-lab`` (for documentation and tests)."""
    p = argparse.ArgumentParser(prog="fairpriv-lab", description="Measure unequal membership-inference risk across groups.")
    from .._core.version import __version__

    p.add_argument("--version", action="version", version=f"fairpriv-lab {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error (anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=argparse.ArgumentParser)

    a = sub.add_parser("audit", help="train a game's models and audit them")
    a.add_argument("--config", type=Path, help="JSON file of an ExperimentConfig (options override it)")
    for section in ("data", "train", "game", "audit", None):
        title = section or "experiment"
        grp = a.add_argument_group(f"{title} options")
        for key, opt, typ, choices, help_ in _options():
            if (key.split(".")[0] if "." in key else None) != section:
                continue
            kw: dict[str, Any] = {"dest": key, "type": typ, "default": argparse.SUPPRESS, "help": help_,
                                  "metavar": opt[2:].upper().replace("-", "_")}
            if choices:
                kw["choices"] = list(choices)
            grp.add_argument(opt, **kw)
    a.add_argument("--data-option", dest="data_options", action="append", type=_key_value, default=[],
                   metavar="KEY=VALUE", help="loader option with a JSON value, e.g. group_sizes=[0.9,0.1]")
    _add_run_options(a)
    a.add_argument("--out", type=Path, help="write summary/records CSV and result.json here")
    a.set_defaults(run=_cmd_audit)

    d = sub.add_parser("demo", help="the main job: SGD vs DP-SGD vs DP-SGD-S on Adult at eps = 10")
    d.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    _add_run_options(d)
    d.set_defaults(run=_cmd_demo)

    ds = sub.add_parser("datasets", help="list or download datasets")
    ds.set_defaults(run=_cmd_datasets)
    dsub = ds.add_subparsers(dest="action", required=True, parser_class=argparse.ArgumentParser)
    dsub.add_parser("list", help="list the datasets and their group attributes")
    dl = dsub.add_parser("download", help="download (and verify) a dataset into the data cache")
    from ..data import list_datasets

    dl.add_argument("name", choices=[i.name for i in list_datasets()])

    from .report import add_report_parser

    add_report_parser(sub)
    c = sub.add_parser("cache", help="list or clear cached results")
    c.set_defaults(run=_cmd_cache)
    csub = c.add_subparsers(dest="action", required=True, parser_class=argparse.ArgumentParser)
    for name, help_ in (("list", "list cached results"), ("clear", "remove cached results")):
        cp = csub.add_parser(name, help=help_)
        cp.add_argument("--cache-dir", type=Path, help="cache folder (default $FAIRPRIV_LAB_CACHE or ~/.cache)")
        if name == "clear":
            cp.add_argument("--key", help="remove only the entry with this key (or unique prefix)")
    # sweep and notebooks run: Dask and papermill (docs/sweeps.md)
    from .sweep import add_sweep_commands

    add_sweep_commands(sub)
    return p


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run options")
    g.add_argument("--cache-dir", type=Path, help="cache folder (default $FAIRPRIV_LAB_CACHE or ~/.cache)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    g.add_argument("--recompute", action="store_true", help="ignore cached results and overwrite them")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--html", type=Path, help="also write an HTML report (needs fairpriv_lab.ui.report)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for this command (default: torch's choice); "
                        "1 is fastest when other jobs compete for the cores")


def config_from_args(args: argparse.Namespace) -> C.ExperimentConfig:
    """Build the ExperimentConfig of ``audit``'s options (ConfigError on a bad combination).

    Options left out keep the value of ``--config`` (or the default); ``none`` clears an
    optional field (``--epsilon none``).
    """
    base = C.ExperimentConfig()
    if args.config is not None:
        try:
            base = C.ExperimentConfig.from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"Expected --config={str(args.config)!r} to be a readable JSON file: {err}") from None
    overrides = {key: getattr(args, key) for key, *_ in _options() if hasattr(args, key)}
    if args.data_options:
        from . import checks

        # name the flag in the message: check --data-option against the chosen loader first
        chosen = base.replace(**overrides) if overrides else base
        checks.check_data_options(chosen.data.name, dict(args.data_options))
        overrides["data.options"] = {**dict(base.data.options), **dict(args.data_options)}
    return base.replace(**overrides) if overrides else base


def _progress_bar(disable: bool, desc: str):
    """Return (callback, close) driving one tqdm bar over models then audit."""
    from tqdm.auto import tqdm

    # A bar redrawn with carriage returns turns a log file (CI, nohup) into noise: draw it only
    # on a terminal; the per-run "done in" lines report progress elsewhere.
    bar = tqdm(total=1.0, disable=disable or not sys.stderr.isatty(), desc=desc, unit="model", leave=False, file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed} elapsed, ETA {remaining}]")
    state = {"stage": ""}

    def callback(stage: str, done: float, total: float) -> None:
        if stage != state["stage"]:
            state["stage"] = stage
        bar.set_postfix_str(f"{stage} {done:.0f}/{total:.0f}", refresh=False)
        frac = (0.9 * done / total) if stage == "train" else 0.9 + 0.1 * done / total
        bar.update(max(0.0, frac - bar.n))

    return callback, bar.close


def _cache_arg(args: argparse.Namespace):
    from ..experiment.cache import Cache

    if getattr(args, "no_cache", False):
        return False
    return Cache(args.cache_dir) if args.cache_dir is not None else True


def _report_module():
    """``fairpriv_lab.ui.report`` (HTML report, ``write_report(results, path) -> Path``) or ConfigError."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("fairpriv_lab.ui.report") is None:
        raise ConfigError("Expected --html only where fairpriv_lab.ui.report is available; this "
                          "installation has no HTML report module. Use --out for CSV and JSON.")
    return importlib.import_module("fairpriv_lab.ui.report")


def _set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (an explicit choice of the person running the command)."""
    if threads is None:
        return
    from .._core import validate as V

    V.integer("--threads", threads, 1)
    from ..engine.device import set_num_threads

    set_num_threads(threads)


def _check_run_options(args: argparse.Namespace, device: str) -> None:
    """Everything a run's options can get wrong, checked before the run (issue 17)."""
    from . import checks

    checks.check_device(device)
    if getattr(args, "out", None) is not None:
        checks.probe_folder("--out", args.out)
    if getattr(args, "html", None) is not None:
        checks.probe_file("--html", args.html, suffixes=(".html", ".htm"))
    if getattr(args, "cache_dir", None) is not None and not getattr(args, "no_cache", False):
        checks.probe_folder("--cache-dir", args.cache_dir)


def _cmd_audit(args: argparse.Namespace) -> int:
    from ..experiment.runner import run
    from . import checks

    cfg = config_from_args(args)
    checks.check_data_options(cfg.data.name, dict(cfg.data.options))
    _check_run_options(args, cfg.device)
    _set_threads(args.threads)
    report = _report_module() if args.html is not None else None
    callback, close = _progress_bar(args.no_progress, cfg.label)
    try:
        result = run(cfg, cache=_cache_arg(args), progress=callback, recompute=args.recompute)
    finally:
        close()
    print(result.table())
    t = result.timings
    print(f"time: {t['total']:.1f} s (train {t['train']:.1f} s, audit {t['audit']:.1f} s); "
          f"chunks trained {result.chunks_trained}, from cache {result.chunks_loaded}")
    if args.out is not None:
        paths = result.save(args.out)
        print(f"wrote {', '.join(p.name for p in paths.values())} to {args.out}")
    if report is not None:
        print(f"wrote {report.write_report([result], args.html)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..ui.demo import run_demo

    C.ExperimentConfig(device=args.device)  # validates --device before any work
    _check_run_options(args, args.device)
    _set_threads(args.threads)
    report = _report_module() if args.html is not None else None
    callback, close = _progress_bar(args.no_progress, "demo")
    try:
        demo = run_demo(args.out, device=args.device, cache=_cache_arg(args), recompute=args.recompute,
                        progress=callback, echo=print, html=args.html is None)
    finally:
        close()
    if report is not None:
        print(f"wrote {report.write_report(demo.results, args.html)}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from ..data import list_datasets

    infos = {i.name: i for i in list_datasets()}
    if args.action == "list":
        width = max(len(n) for n in infos)
        for info in infos.values():
            where = "offline" if info.offline else "download"
            print(f"{info.name:<{width}}  {where:<8}  groups: {', '.join(info.groups):<24} {info.description}")
        return 0
    info = infos[args.name]
    if info.offline:
        print(f"{info.name} is available offline ({info.description}); nothing to download.")
        return 0
    from ..data import download_dataset

    for path in download_dataset(info.name):
        print(f"{info.name}: {path} (sha256 verified)")
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from ..experiment.cache import Cache

    cache = Cache(args.cache_dir) if args.cache_dir is not None else Cache()
    if args.action == "list":
        entries = cache.list()
        if not entries:
            print(f"no cached results in {cache.root}")
            return 0
        for e in entries:
            n_chunks = sum(1 for i in e.items if i.startswith("chunk-"))
            audits = sum(1 for i in e.items if i.startswith("audit-"))
            print(f"{e.key[:12]}  {e.size_bytes / 1e6:8.2f} MB  {n_chunks:3d} chunks  {audits} audits  {e.label}")
        print(f"{len(entries)} entries, {cache.size_bytes() / 1e6:.2f} MB in {cache.root}")
        return 0
    freed = cache.clear(args.key)
    print(f"freed {freed / 1e6:.2f} MB in {cache.root}")
    return 0


def _option_names(message: str) -> str:
    """Say ``--epsilon`` where a config message says ``train.epsilon`` (command-line words)."""
    for key, opt, *_ in sorted(_options(), key=lambda o: -len(o[0])):
        # a top-level key ("device", "seed") is also an English word: replace it only as a
        # parameter ("device=..."), never in prose ("a present device")
        after = r"(?![\w])" if "." in key else r"(?==)"
        message = re.sub(rf"(?<![\w.-]){re.escape(key)}{after}", opt, message)
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with argv (``sys.argv[1:]`` when None); return the exit status.

    Examples
    --------
    >>> main(["audit", "--method", "dp"])  # doctest: +SKIP
    2
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line: it shows tracebacks instead of one-line errors
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad options, 0 on --help
        return int(exc.code or 0)
    prefix = f"fairpriv-lab {args.command}: error:"
    try:
        with _one_line_warnings(args.command):
            return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted; chunks of models that finished before are cached (unless --no-cache) "
              "and a re-run resumes from them", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        if isinstance(err, ConfigError):
            print(f"{prefix} {_option_names(str(err))}", file=sys.stderr)
            return 2
        if isinstance(err, FairPrivError):
            print(f"{prefix} {err}", file=sys.stderr)
            return 1
        if isinstance(err, OSError):
            from .checks import os_error_line

            print(f"{prefix} {os_error_line(err)}", file=sys.stderr)
            return 1
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"{prefix} {type(err).__name__}: {text} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Show each distinct warning once as ``fairpriv-lab CMD: warning: ...`` (no source line)."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        text = f"fairpriv-lab {command}: warning: {message}"
        if text not in seen:
            seen.add(text)
            print(text, file=sys.stderr)

    old = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


def _dispatch(args: argparse.Namespace) -> int:
    """Check what a command will write before it starts, then run it (its parser's ``run``)."""
    from . import checks

    if args.command in ("sweep", "notebooks"):
        checks.probe_folder("--out", args.out)
        if getattr(args, "cache", None):
            checks.probe_folder("--cache", args.cache)
    if args.command == "report":
        from .report import default_output

        checks.probe_file("-o/--output", args.output if args.output is not None else default_output(args.source),
                          suffixes=(".html", ".htm"))
    return args.run(args)  # every subcommand's parser sets its ``run``


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

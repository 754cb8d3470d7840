"""SDA Stage 4: score raw + projected target sets with the SDA / DDA ensembles.

Accepts the reference command line, e.g.

    python eval/test_ensemble.py configs/eval/ConvNeXtB.py finetuned_ckpt/ConvNeXtB.pth \
        --originckpt pretrained_ckpt/convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth \
        --metrics accuracy --datatype C --ensemble sda --corruption gaussian_noise \
        --data_prefix1 data/ImageNet-C --data_prefix2 data/ImageNet-C-Syn

plus ``--corruption all`` / comma lists, ``--severity 1,2,3``, several ``--ensemble`` modes in
one pass (each model runs once per image), ``--out results.json`` (+ .md and .csv beside it),
``--launcher pytorch`` under torchrun, ``--amp``, ``--allow-missing``.

Models: ``sda`` = original model (``--originckpt``) on the raw image + fine-tuned model (the
positional checkpoint) on the projection. Every other mode uses one model, by default the
original one (``--single-model original``), as the paper's Source and DDA columns do; without
``--originckpt`` the positional checkpoint is that model (the reference's DDA command).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sda import evaluation as ev
from sda.utils.cli import run_main
from sda.utils.dist import DistInfo, all_gather_object, cleanup, init_distributed, shard
from sda.utils.errors import UserError
from sda.utils.io import write_json, write_text


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected integers like 5 or 1,2,3, got {text!r}") from e


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description="SDA / DDA ensemble evaluation on ImageNet-C / ImageNet-W layouts")
    p.add_argument("config", help="eval config (configs/eval/<Model>.py)")
    p.add_argument("checkpoint", help="fine-tuned checkpoint (the only model when --originckpt is not given)")
    p.add_argument("--originckpt", default=None, help="original (source) checkpoint; needed by the sda mode")
    p.add_argument(
        "--data_prefix1",
        "--data-prefix1",
        dest="data_prefix1",
        required=True,
        help="raw target root (ImageNet-C or ImageNet-W)",
    )
    p.add_argument(
        "--data_prefix2",
        "--data-prefix2",
        dest="data_prefix2",
        default=None,
        help="projected root (same layout and file names)",
    )
    p.add_argument("--datatype", default="C", choices=["C", "W"])
    p.add_argument("--corruption", default="all", help="'all', a name or a comma list (datatype C)")
    p.add_argument("--severity", type=_int_list, default=[5], help="5 or a comma list like 1,2,3")
    p.add_argument(
        "--ensemble",
        default=None,
        help="mode or comma list or 'all' (default: first,second,sum[,sda]): " + ", ".join(ev.ensemble.MODES),
    )
    p.add_argument(
        "--single-model",
        choices=["original", "finetuned"],
        default="original",
        help="model of every mode but sda when --originckpt is given (default: original, as the "
        "paper's Source/DDA columns; 'finetuned' = the reference's positional checkpoint)",
    )
    p.add_argument("--metrics", nargs="+", default=["accuracy"], help="only 'accuracy' (top-1 and top-5)")
    p.add_argument("--out", default=None, help="results .json; the .md table and .csv are written beside it")
    p.add_argument(
        "--allow-missing", action="store_true", help="score the images present in both roots and report the counts"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA, bf16 on CPU)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--launcher",
        choices=["none", "pytorch"],
        default="none",
        help="'pytorch' under torchrun: data-parallel, exact gathering",
    )
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--allow-pickle", action="store_true", help="load checkpoints with full pickle (trusted files)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value")
    return p.parse_args(argv)


def _setup(args: argparse.Namespace) -> DistInfo:
    if args.launcher == "pytorch":
        return init_distributed(args.device)
    want = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return DistInfo(0, 1, 0, torch.device(want), False)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    from mmengine.config import Config

    if any(m != "accuracy" for m in args.metrics):
        raise UserError(f"--metrics {' '.join(args.metrics)}: only 'accuracy' is supported")
    for name, v in (("--batch-size", args.batch_size), ("--num-workers", args.num_workers + 1)):
        if v < 1:
            raise UserError(f"{name} must be positive")
    if not Path(args.config).is_file():
        raise UserError(f"config {args.config} not found; use one of configs/eval/*.py")
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)

    modes = ev.parse_modes(args.ensemble or ("first,second,sum,sda" if args.originckpt else "first,second,sum"))
    if "sda" in modes and not args.originckpt:
        raise UserError("the sda mode needs --originckpt (the original model scores the raw images)")
    single = args.single_model if args.originckpt else "finetuned"
    single_ckpt = args.originckpt if single == "original" else args.checkpoint
    with_proj = ev.needs_projection(modes)
    if with_proj and not args.data_prefix2:
        raise UserError(f"modes {', '.join(m for m in modes if m != 'first')} need --data_prefix2 (projected root)")

    info = _setup(args)
    try:
        return _evaluate(args, cfg, modes, single, single_ckpt, with_proj, info)
    finally:
        cleanup()


def _evaluate(args, cfg, modes, single, single_ckpt, with_proj, info: DistInfo) -> dict | None:
    corruptions = [c.strip() for c in args.corruption.split(",") if c.strip()]
    subsets = ev.build_subsets(
        args.datatype,
        args.data_prefix1,
        args.data_prefix2 if with_proj else None,
        corruptions,
        args.severity,
        args.allow_missing,
    )
    from sda.classifiers import head_num_classes

    ev.check_num_classes(subsets, head_num_classes(cfg))
    loaded: dict[str, torch.nn.Module] = {}

    def get(path: str) -> torch.nn.Module:
        if path not in loaded:
            loaded[path] = ev.load_classifier(cfg, path, info.device, args.allow_pickle)
        return loaded[path]

    others = [m for m in modes if m != "sda"]
    models = ev.EvalModels(single=get(single_ckpt) if others else None)
    if "sda" in modes:
        models.original, models.finetuned = get(args.originckpt), get(args.checkpoint)
    for model in loaded.values():
        ev.check_num_classes(subsets, ev.num_classes_of(model))

    dataset = ev.PairedImages(subsets, ev.build_pipeline(cfg), with_proj)
    indices = shard(range(len(dataset)), info.rank, info.world_size)
    amp_dtype = (torch.float16 if info.device.type == "cuda" else torch.bfloat16) if args.amp else None
    t0 = time.time()
    part = ev.run_scoring(
        dataset,
        indices,
        models,
        modes,
        ev.Normalizer(cfg),
        info.device,
        args.batch_size,
        args.num_workers,
        amp_dtype,
        desc=f"eval {args.datatype} ({len(subsets)} sets)",
    )
    parts = all_gather_object(part)
    if info.rank != 0:
        return None
    merged = ev.merge_parts(parts, len(dataset))
    summary = ev.summarize(subsets, dataset, merged, modes)
    table = ev.markdown_tables(summary, modes, single, args.datatype)
    print(table, flush=True)
    record = {
        "datatype": args.datatype,
        "config": args.config,
        "checkpoint": args.checkpoint,
        "originckpt": args.originckpt,
        "single_model": single,
        "single_model_checkpoint": single_ckpt,
        "modes": modes,
        "methods": {m: ev.method_label(m, single) for m in modes},
        "models_per_mode": ev.mode_models(modes, single),
        "data_prefix1": args.data_prefix1,
        "data_prefix2": args.data_prefix2 if with_proj else None,
        "severities": args.severity if args.datatype == "C" else None,
        "world_size": info.world_size,
        "amp": bool(args.amp),
        "images": len(dataset),
        "seconds": round(time.time() - t0, 2),
        **summary,
    }
    if args.out:
        out = Path(args.out)
        write_json(out, record)
        write_text(out.with_suffix(".md"), table)
        write_text(out.with_suffix(".csv"), ev.csv_rows(summary, modes, single, args.datatype))
        print(f"results: {out}, {out.with_suffix('.md')}, {out.with_suffix('.csv')}", flush=True)
    return record


if __name__ == "__main__":
    run_main(main)

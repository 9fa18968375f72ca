"""Starting checkpoints for the recipes: `python -m training.init_model l2l --preset tiny --out DIR`,
`python -m training.init_model lens|cora --qwen DIR --sam2 DIR --out DIR`.

Presets build the architecture from configs with random weights (`tiny`: the CPU recipes and tests;
`swin-b`: the paper's Swin-B + BERT-base dims, for timing); `--vision DIR --text DIR` starts from
pretrained Swin and BERT checkpoints instead (the paper's setting). The tokenizer is the BERT uncased
vocabulary (the set-up cache's MiniLM tokenizer, or the text checkpoint's own). LENS and CORA start from
a Qwen2.5-VL and a SAM2 checkpoint (`LensModel.from_base`: the context module fresh, written in the release's
layout; `CoraModel.from_base`: the three tokens added, the projection and anchor encoders fresh).
"""
from __future__ import annotations

import argparse
from pathlib import Path

L2L_PRESETS = {
    "tiny": dict(image_size=64, max_text_len=12, decoder_dim=16, attention_heads=2,
                 vision=dict(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                             window_size=2, mlp_ratio=2.0),  # the last stage is 2x2: windows must fit
                 text=dict(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=64)),
    "swin-b": dict(image_size=480, max_text_len=20, decoder_dim=256, attention_heads=8,
                   vision=dict(image_size=480, patch_size=4, embed_dim=128, depths=[2, 2, 18, 2],
                               num_heads=[4, 8, 16, 32], window_size=12),
                   text=dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                             intermediate_size=3072)),
}


def init_l2l(out: Path, preset: str = "tiny", seed: int = 0, vision: str = "", text: str = "",
             tokenizer: str = "") -> Path:
    import torch
    from transformers import BertTokenizerFast

    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.models.l2l import L2LConfig, L2LSegmentor

    torch.manual_seed(seed)
    if vision and text:
        model = L2LSegmentor.from_backbones(vision, text)
    else:
        model = L2LSegmentor(L2LConfig(**L2L_PRESETS[preset]))
    tok = BertTokenizerFast.from_pretrained(tokenizer or text or str(resolve_cache_dir() / "minilm"),
                                            local_files_only=True)
    return model.save_pretrained(out, tok)


def init_mllm(method: str, out: Path, qwen: str, sam2: str, dtype: str = "bfloat16", num_queries: int = 64,
              seed: int = 0) -> Path:
    """LENS or CORA from base checkpoints, saved where the recipes' `checkpoint:` points."""
    import torch

    if method == "lens":
        from reasonseg.models.lens import LensModel

        model, processor = LensModel.from_base(qwen, sam2, num_queries=num_queries, seed=seed)
    else:
        from reasonseg.models.cora import CoraModel

        model, processor = CoraModel.from_base(qwen, sam2, seed=seed)
    return model.save_pretrained(out, dtype=getattr(torch, dtype), processor=processor)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=["l2l", "lens", "cora"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--preset", choices=sorted(L2L_PRESETS), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vision", default="", help="pretrained Swin checkpoint (dir or cached HF id)")
    p.add_argument("--text", default="", help="pretrained BERT checkpoint (dir or cached HF id)")
    p.add_argument("--qwen", default="", help="lens / cora: Qwen2.5-VL checkpoint (dir or cached HF id)")
    p.add_argument("--sam2", default="", help="lens / cora: SAM2 checkpoint (dir or cached HF id)")
    p.add_argument("--num-queries", type=int, default=64, help="lens: context queries (Table A1: 64)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16", help="lens / cora: stored dtype")
    args = p.parse_args(argv)
    if args.method in ("lens", "cora"):
        if not (args.qwen and args.sam2):
            p.error(f"{args.method} needs --qwen and --sam2")
        print(init_mllm(args.method, args.out, args.qwen, args.sam2, args.dtype, args.num_queries, args.seed))
    else:
        print(init_l2l(args.out, args.preset, args.seed, args.vision, args.text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

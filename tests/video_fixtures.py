"""Test material for the video tests, built locally: tiny mp4s (PyAV) and tiny diffusers
pipelines with random weights (real classes, saved with ``save_pretrained`` and loaded by path,
the same way a user's local checkpoint is loaded). Nothing is downloaded."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np


# ---------------------------------------------------------------------- clips
def make_frames(n: int = 8, w: int = 64, h: int = 48, seed: int = 0) -> np.ndarray:
    """A moving gradient with a little noise: compresses like real footage, not like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    base = rng.integers(0, 255, 3)
    for t in range(n):
        r = (xx * 4 + t * 8 + base[0]) % 256
        g = (yy * 4 + t * 4 + base[1]) % 256
        b = ((xx + yy) * 2 + base[2]) % 256
        f = np.stack([r, g, b], axis=-1).astype(np.int16)
        f += rng.integers(-6, 7, f.shape, dtype=np.int16)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def make_mp4(n: int = 8, w: int = 64, h: int = 48, fps: float = 8, seed: int = 0,
             preset: str = "ultrafast", crf: int = 23) -> bytes:
    from vidprom_lake.video.encode import EncodeParams, encode_mp4

    return encode_mp4(make_frames(n, w, h, seed), EncodeParams(fps=fps, preset=preset, crf=crf))


def write_tar(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> Path:
    """A tar shard with exactly these member names (hostile ones included, unsanitised)."""
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


def lake_with_prompts(tmp_path: Path, n: int = 20, seed: int = 1):
    """A lake with n VidProM-shaped prompts; returns (lake, uuids)."""
    from vidprom_lake import create_lake, synth

    lake = create_lake(tmp_path / "lake")
    csv_path = synth.write_vidprom_csv(tmp_path / f"prompts-{seed}.csv", n, seed=seed)
    lake.ingest(csv_path)
    uuids = [r["uuid"] for r in synth.rows(n, seed)]
    return lake, uuids


# ---------------------------------------------------------------------- tiny pipelines
def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def tiny_clip_tokenizer(folder: Path):
    """A byte-level CLIP BPE tokenizer with no merges (one token per byte), 514 tokens."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         model_max_length=77)


def _tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=8,
                         intermediate_size=16, layer_norm_eps=1e-5, num_attention_heads=2,
                         num_hidden_layers=2, vocab_size=520, hidden_act="gelu",
                         projection_dim=8, max_position_embeddings=77)
    return CLIPTextModel(cfg)


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8,), in_channels=3, out_channels=3,
                         down_block_types=["DownEncoderBlock2D"],
                         up_block_types=["UpDecoderBlock2D"], latent_channels=4,
                         sample_size=32, norm_num_groups=2)


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def tiny_modelscope(folder: Path) -> Path:
    """A TextToVideoSDPipeline (ModelScope's class) with random weights, saved to `folder`."""
    import torch
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=8,
        attention_head_dim=4, norm_num_groups=2)
    pipe = TextToVideoSDPipeline(unet=unet, scheduler=_ddim(), vae=_tiny_vae(),
                                 text_encoder=_tiny_text_encoder(),
                                 tokenizer=tiny_clip_tokenizer(folder.parent / "tok-ms"))
    pipe.save_pretrained(folder)
    return folder


def tiny_text2video_zero_sd(folder: Path) -> Path:
    """A Stable Diffusion checkpoint (StableDiffusionPipeline layout) with random weights, on
    which the text2video-zero preset builds TextToVideoZeroPipeline."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
        attention_head_dim=4, norm_num_groups=2)
    pipe = StableDiffusionPipeline(unet=unet, scheduler=_ddim(), vae=_tiny_vae(),
                                   text_encoder=_tiny_text_encoder(),
                                   tokenizer=tiny_clip_tokenizer(folder.parent / "tok-sd"),
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def tiny_animatediff(folder: Path) -> Path:
    """An AnimateDiffPipeline with random weights: a third pipeline class, loaded through the
    generic ``diffusers:<path>`` route."""
    import torch
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=2, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
        attention_head_dim=4, norm_num_groups=2)
    adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=2,
                            motion_norm_num_groups=2, motion_num_attention_heads=4)
    pipe = AnimateDiffPipeline(unet=unet, motion_adapter=adapter, scheduler=_ddim(),
                               vae=_tiny_vae(), text_encoder=_tiny_text_encoder(),
                               tokenizer=tiny_clip_tokenizer(folder.parent / "tok-ad"),
                               feature_extractor=None, image_encoder=None)
    pipe.save_pretrained(folder)
    return folder

"""Diffusion pipelines (diffusers) stored by :func:`lexflow.log_diffusers`.

The model directory holds a pyfunc whose artifact ``pipeline`` is a saved diffusers pipeline
(``save_pretrained``); its ``lexflow`` metadata says ``adapter: diffusers_pipeline``. Two kinds:

- unconditional (a ``UNet2DModel`` + DDPM/DDIM-type scheduler, e.g. ``DDPMPipeline``): x_t is the
  image-space noise latent, edited at t = T (``t_fraction`` 1.0), guidance scale 0.1;
- text-conditional Stable Diffusion (``unet`` takes ``encoder_hidden_states``; ``vae``,
  ``text_encoder``, ``tokenizer``): x_t is the VAE latent z_t, edited at 0.7 T under the edit
  prompt's embedding, guidance scale 1.

The explained items are h-space directions (see :mod:`lexflow.diffusion`); ``decode`` maps
flattened x_t at the edit timestep to images in [-1, 1] by DDIM (no classifier-free guidance, so
inversion and decoding are exact inverses up to the DDIM approximation). Settings come from the
metadata key ``diffusion`` (written by ``log_diffusers``) and the run options; nothing is ever
downloaded: pipelines load with ``local_files_only=True``.
"""

from __future__ import annotations

import glob
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lexflow.adapters.base import ModelInfo, check_device, flavor_conf, resolve_device
from lexflow.errors import ConfigError, ModelContractError, require

ARTIFACT_KEY = "pipeline"
DTYPES = ("float32", "float16", "bfloat16")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class DiffusionSettings:
    """How a diffusion model is inverted, probed, guided and decoded (paper values by default).

    Attributes:
        directions: k, h-space directions explained.
        ddim_steps: DDIM steps over the whole schedule (the paper: 100); inversion and decoding
            use the part of it below the edit timestep.
        t_fraction: edit timestep as a fraction of T (1.0 for a DDPM: x_T; 0.7 for SD).
        guidance_steps: G, guidance steps per sign (the paper: 16).
        guidance_scale: g (0.1 for a DDPM, 1.0 for SD).
        delta: d, the step along v inside eps(x + d v, t) (x_t units).
        power_iterations: most subspace iterations for the directions.
        prompt: the prompt images are sampled and decoded under (SD; "" = unconditional).
        edit_prompt: the prompt of the Jacobian and the guidance (SD only).
        max_batch: U-Net batch per forward call inside decoding and direction products.
    """

    directions: int = 5
    ddim_steps: int = 100
    t_fraction: float = 1.0
    guidance_steps: int = 16
    guidance_scale: float = 0.1
    delta: float = 1.0
    power_iterations: int = 20
    prompt: str = ""
    edit_prompt: str | None = None
    max_batch: int = 16

    @classmethod
    def resolve(cls, metadata: dict[str, Any], config: Any, conditional: bool) -> DiffusionSettings:
        """Defaults for the model kind, then metadata ``diffusion``, then the run options."""
        base: dict[str, Any] = {"t_fraction": 0.7, "guidance_scale": 1.0} if conditional else {}
        meta = metadata.get("diffusion") or {}
        if not isinstance(meta, dict):
            raise ModelContractError(f"MLmodel metadata lexflow.diffusion must be a mapping; got {meta!r}.")
        unknown = sorted(set(meta) - set(cls.__dataclass_fields__))
        if unknown:
            raise ModelContractError(
                f"Unknown keys in MLmodel metadata lexflow.diffusion: {unknown}. Known: "
                f"{', '.join(cls.__dataclass_fields__)}."
            )
        base.update(meta)
        if metadata.get("edit_prompt"):
            base["edit_prompt"] = metadata["edit_prompt"]
        for key in ("directions", "ddim_steps", "edit_prompt"):
            value = getattr(config, key, None)
            if value not in (None, ""):
                base[key] = value
        settings = cls(**base)
        problems = []
        for key in ("directions", "ddim_steps", "guidance_steps", "power_iterations", "max_batch"):
            v = getattr(settings, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                problems.append(f"{key} must be an integer >= 1; got {v!r}")
        if problems:
            raise ConfigError("Invalid diffusion settings:\n  - " + "\n  - ".join(problems))
        return settings


def load_images(spec: str, size: int, channels: int) -> Any:
    """Images from a path, a comma-separated list of paths or a directory -> [N, C, H, W] in [-1, 1].

    Every image must be ``size`` x ``size`` pixels: lexflow does not resize (it would change
    what the model sees); resize them first.
    """
    import torch
    from PIL import Image

    paths: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if os.path.isdir(part):
            paths += sorted(p for p in glob.glob(os.path.join(part, "*"))
                            if p.lower().endswith(IMAGE_SUFFIXES))
        else:
            paths.append(part)
    if not paths:
        raise ConfigError(f"image={spec!r} names no image files (.png, .jpg, ...).")
    out = []
    for path in paths:
        try:
            img = Image.open(path)
            img.load()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"Cannot read image {path!r}: {exc}") from exc
        if img.size != (size, size):
            raise ConfigError(
                f"Image {path!r} is {img.size[0]}x{img.size[1]} px; this pipeline makes "
                f"{size}x{size} px images. Resize or crop it to {size}x{size} first."
            )
        arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 127.5 - 1
        out.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


class DiffusionPipelineAdapter:
    """A diffusers pipeline as a lexflow decoder of h-space direction traversals."""

    flavor = "diffusers_pipeline"
    output_range = (-1.0, 1.0)  # decode() returns images in [-1, 1]

    def __init__(self, pipeline: Any, *, device: str = "auto", metadata: dict[str, Any] | None = None
                 ) -> None:
        self._torch = require("torch", extra="diffusion", purpose="Explaining a diffusion model")
        self.pipeline = pipeline
        self.metadata = dict(metadata or {})
        self.unet: Any = getattr(pipeline, "unet", None)
        self.scheduler: Any = getattr(pipeline, "scheduler", None)
        if self.unet is None or self.scheduler is None:
            raise ModelContractError(
                f"The diffusers pipeline ({type(pipeline).__name__}) has no unet or no scheduler; "
                "lexflow explains U-Net diffusion pipelines (DDPM/DDIM, Stable Diffusion)."
            )
        self.vae: Any = getattr(pipeline, "vae", None)
        self.text_encoder: Any = getattr(pipeline, "text_encoder", None)
        self.tokenizer: Any = getattr(pipeline, "tokenizer", None)
        self.conditional = self.text_encoder is not None
        self.device = resolve_device(device)
        check_device(self.device)
        self.dtype = self._torch.float32
        self._modules = [m for m in (self.unet, self.vae, self.text_encoder) if m is not None]
        for m in self._modules:
            m.to(self.device).eval()
            m.requires_grad_(False)
        self.settings = DiffusionSettings.resolve(self.metadata, None, self.conditional)
        self.latent_dim = self.settings.directions
        self._schedule: Any = None
        self._edit_index = 0
        self._decode_cond: Any = None

    # --- loading -------------------------------------------------------------------------------

    @classmethod
    def from_local(cls, local_dir: str, info: ModelInfo, *, device: str) -> DiffusionPipelineAdapter:
        path = pipeline_dir(local_dir, info)
        return cls(load_pipeline(path), device=device, metadata=info.metadata)

    # --- shapes and model calls ----------------------------------------------------------------

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        cfg = self.unet.config
        size = cfg.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return int(cfg.in_channels), int(h), int(w)

    @property
    def image_size(self) -> int:
        _, h, _ = self.sample_shape
        if self.vae is None:
            return h
        return h * 2 ** (len(self.vae.config.block_out_channels) - 1)

    def embed(self, prompt: str) -> Any:
        """The text encoder's embedding of ``prompt``: [1, L, D]."""
        torch = self._torch
        tok = self.tokenizer(prompt, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        with torch.no_grad():
            return self.text_encoder(tok.input_ids.to(self.device))[0].to(self.dtype)

    def _unet(self, x: Any, t: int, cond: Any) -> Any:
        torch = self._torch
        ts = torch.full((x.shape[0],), t, device=self.device, dtype=torch.long)
        x = x.to(self.dtype)
        if cond is None:
            out = self.unet(x, ts)
        else:
            out = self.unet(x, ts, encoder_hidden_states=cond.expand(x.shape[0], *cond.shape[1:]))
        return (out.sample if hasattr(out, "sample") else out[0]).float()

    def model_fn(self, cond: Any) -> Any:
        """(x, t) -> raw U-Net output, batched by ``max_batch``, without gradients."""
        torch = self._torch

        def run(x: Any, t: int) -> Any:
            with torch.no_grad():
                step = self.settings.max_batch
                return torch.cat([self._unet(x[i : i + step], t, cond)
                                  for i in range(0, x.shape[0], step)])

        return run

    def set_dtype(self, name: str) -> None:
        torch = self._torch
        if name not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {name!r}.")
        if name == "float16" and not self.device.startswith("cuda"):
            raise ConfigError("dtype=float16 (half precision) needs a CUDA device; use float32 or "
                              "bfloat16 on the CPU.")
        if getattr(torch, name) == self.dtype:
            return
        self.dtype = getattr(torch, name)
        for m in self._modules:
            m.to(dtype=self.dtype)

    # --- the plan ------------------------------------------------------------------------------

    def traversal_plan(self, config: Any) -> Any:
        """Check the options now (cheap); invert and find directions when first needed."""
        from lexflow.diffusion.ddim import DDIMSchedule
        from lexflow.diffusion.guidance import DirectionPlan, frame_values
        from lexflow.diffusion.hspace import mid_block_fn

        s = DiffusionSettings.resolve(self.metadata, config, self.conditional)
        self.settings = s
        self.set_dtype(getattr(config, "dtype", "float32") or "float32")
        if s.edit_prompt and not self.conditional:
            raise ConfigError(
                f"edit_prompt={s.edit_prompt!r} was given, but this is an unconditional diffusion "
                f"model ({type(self.unet).__name__}, no text encoder): it cannot take a prompt. "
                "Leave edit_prompt empty."
            )
        if self.conditional and not s.edit_prompt:
            raise ConfigError(
                "This is a text-conditional diffusion model: give an edit prompt (edit_prompt="
                "'smile', --edit-prompt smile), or log it with metadata lexflow.edit_prompt."
            )
        schedule = DDIMSchedule.from_scheduler(self.scheduler, s.ddim_steps)
        edit = schedule.edit_index(s.t_fraction)
        mid_block_fn(self.unet, lambda x: None)  # fails now when there is no mid-block
        image = getattr(config, "image", None) or None
        images = load_images(image, self.image_size, self._image_channels()) if image else None
        values = frame_values(s.guidance_steps, config.steps)
        rows = len(images) if images is not None else config.rows
        self._schedule, self._edit_index = schedule, edit
        edit_cond = self.embed(s.edit_prompt or "") if self.conditional else None
        self._decode_cond = self.embed(s.prompt) if self.conditional else None
        torch = self._torch

        def eps_at(x: Any) -> Any:
            t = schedule.timesteps[edit]
            return schedule.eps(self.model_fn(edit_cond)(x, t), x, edit)

        def prepare() -> Any:
            from lexflow.diffusion.hspace import classic_attention, pullback_directions

            base = self.base_latents(images, rows, config.seed).to(self.device)
            t = schedule.timesteps[edit]
            h = mid_block_fn(self.unet, lambda x: self._unet(x, t, edit_cond))
            with classic_attention(self.unet):
                dirs = pullback_directions(h, base.to(self.dtype), s.directions,
                                           iterations=s.power_iterations, seed=config.seed,
                                           max_batch=s.max_batch)
            return base, dirs

        del torch
        details = {"model": "stable-diffusion" if self.conditional else "unconditional-diffusion",
                   "t_fraction": s.t_fraction, "timestep": schedule.timesteps[edit],
                   "ddim_steps": s.ddim_steps, "edit_prompt": s.edit_prompt, "prompt": s.prompt,
                   "base": "inverted images" if images is not None else "sampled noise",
                   "dtype": str(self.dtype).replace("torch.", ""), "settings": asdict(s)}
        return DirectionPlan(items=s.directions, rows=rows, values=values, prepare=prepare,
                             eps_at=eps_at, guidance_steps=s.guidance_steps,
                             guidance_scale=s.guidance_scale, delta=s.delta,
                             condition=s.edit_prompt, details=details)

    def _image_channels(self) -> int:
        if self.vae is not None:
            return int(self.vae.config.in_channels)
        return int(self.unet.config.in_channels)

    def base_latents(self, images: Any, rows: int, seed: int) -> Any:
        """x_t at the edit timestep: DDIM inversion of ``images``, or DDIM sampling from noise."""
        from lexflow.diffusion import ddim

        torch = self._torch
        schedule, edit = self._schedule, self._edit_index
        model = self.model_fn(self._decode_cond)
        if images is not None:
            x0 = images.to(self.device, torch.float32)
            if self.vae is not None:
                with torch.no_grad():
                    dist = self.vae.encode(x0.to(self.dtype)).latent_dist
                    x0 = dist.mean.float() * self.vae.config.scaling_factor
            return ddim.invert(model, x0, schedule, edit)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn((rows, *self.sample_shape), generator=gen).to(self.device)
        return ddim.sample(model, noise, schedule, len(schedule) - 1, edit)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Flattened x_t at the edit timestep [N, C*H*W] -> images [N, C, H, W] in [-1, 1]."""
        from lexflow.diffusion import ddim

        torch = self._torch
        if self._schedule is None:
            raise ModelContractError("decode() needs a traversal plan first (traversal_plan()).")
        x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(self.device)
        x = x.reshape(x.shape[0], *self.sample_shape)
        x0 = ddim.sample(self.model_fn(self._decode_cond), x, self._schedule, self._edit_index)
        if self.vae is not None:
            with torch.no_grad():
                x0 = torch.cat([
                    self.vae.decode((x0[i : i + self.settings.max_batch] /
                                     self.vae.config.scaling_factor).to(self.dtype)).sample.float()
                    for i in range(0, x0.shape[0], self.settings.max_batch)])
        return x0.clamp(-1, 1).cpu().numpy()


def pipeline_dir(local_dir: str, info: ModelInfo) -> str:
    """The saved pipeline inside a model logged by log_diffusers."""
    conf = flavor_conf(local_dir, "python_function")
    artifact = (conf.get("artifacts") or {}).get(ARTIFACT_KEY) or {}
    rel = artifact.get("path") if isinstance(artifact, dict) else None
    path = os.path.join(local_dir, rel or os.path.join("artifacts", ARTIFACT_KEY))
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise ModelContractError(
            f"No saved diffusers pipeline (model_index.json) at {path}. Log diffusion pipelines "
            "with lexflow.log_diffusers(pipeline, name=...)."
        )
    return path


def load_pipeline(path: str, **kwargs: Any) -> Any:
    """``DiffusionPipeline.from_pretrained`` from a local directory, never from the network."""
    diffusers = require("diffusers", extra="diffusion", purpose="Loading a diffusion pipeline")
    try:
        return diffusers.DiffusionPipeline.from_pretrained(path, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelContractError(f"Could not load the diffusers pipeline at {path}: {exc}") from exc

"""The "Radial Attention Calibrate" node: measure on the user's own model how much attention the
radial mask keeps, recommend the Patch settings, and show it.

It samples for real with ComfyUI's sampler, dense, on a clone of the model that carries
:class:`CalibrationOverride`, a subclass of the patch's own override: the same planner
(``attention_plan.plan_call``) picks the calls the patch would make sparse, and at the probed
steps each of them is measured (``radial_core.calibration.attention_energy``: exact float32
softmax of sampled query rows, reduced on the fly) before it runs dense. An APPLY_MODEL wrapper
keeps the inputs and the dense denoised prediction of the probed model calls; once the sampler
is done (still inside its SAMPLER_SAMPLE wrapper, the model loaded), the recommendation is made
and each kept call is run again with radial attention at the recommended setting, which gives
the relative error of the denoised prediction per probed step.

The result: a picture (``radial_core.calibration_plot``), the recommended decay factor, dense
blocks and dense steps (they connect to Radial Attention Patch), a text report, and a small JSON
beside the outputs (``radial_attention/calibration_*.json``) that :func:`read_calibration` reads
back.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import comfy.patcher_extension as pe
from comfy_api.latest import io, ui

from ..radial_core import calibration as rcal
from ..radial_core import calibration_plot
from .attention_override import RadialAttentionOverride
from .model_family import OVERRIDE_FAMILIES, describe_model, detect_family
from .radial_patcher import OVERRIDE_KEY, apply_radial_patch, get_radial_config
from .run_state import RUN_KEY, RunState, forward_of
from .validation import Choice

logger = logging.getLogger(__name__)

CATEGORY = "Radial Attention"
CAL_KEY = "radial_attention_calibrate"
RESULT_DIR = "radial_attention"
MAX_ROWS = 4096


def parse_probe_steps(text: str, steps: int) -> tuple[int, ...]:
    """``"auto"``: steps 0, 1, a quarter, half way and the last; else ``"0,2,10"`` (0-based
    indices into the schedule)."""
    if steps < 1:
        raise ValueError("probe_steps: the schedule has no steps. Fix: use at least 1 step.")
    t = (text or "").strip().lower()
    if t in ("", "auto"):
        return tuple(sorted({0, min(1, steps - 1), steps // 4, steps // 2, steps - 1}))
    out = set()
    for part in t.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            i = int(part)
        except ValueError:
            raise ValueError(f"probe_steps: could not read {text!r}. Fix: 'auto' or step indices "
                             f"such as '0,1,5,10'.") from None
        if not 0 <= i < steps:
            raise ValueError(f"probe_steps: step {i} is outside the schedule's steps 0 to {steps - 1}. "
                             f"Fix: list indices below {steps}.")
        out.add(i)
    if not out:
        raise ValueError(f"probe_steps: no step in {text!r}. Fix: 'auto' or e.g. '0,1,5'.")
    return tuple(sorted(out))


@dataclass
class _Forward:
    """One probed model call: what is needed to run it again radially, and its dense output."""

    step: int
    executor: object
    args: tuple
    topts: dict
    kwargs: dict
    dense: object  # on the CPU
    steps: object  # the pass's PassSteps
    device: object = None  # where x lives during sampling (x waits on the CPU)


def _clone(v):
    if isinstance(v, torch.Tensor):
        return v.clone()
    if isinstance(getattr(v, "tensors", None), list):  # comfy.nested_tensor.NestedTensor (video + audio)
        return type(v)([t.clone() for t in v.tensors])
    return v


def _to(v, device):
    """A copy of a latent-sized tensor (or NestedTensor) on ``device``: the probed calls' inputs and
    dense outputs wait on the CPU for the output check, off the GPU's peak memory."""
    if isinstance(v, torch.Tensor):
        return v.to(device, copy=True)
    if isinstance(getattr(v, "tensors", None), list):
        return type(v)([t.to(device, copy=True) for t in v.tensors])
    return v


def _device(v):
    if isinstance(v, torch.Tensor):
        return v.device
    got = getattr(v, "tensors", None)
    return got[0].device if isinstance(got, list) and got else torch.device("cpu")


def _tensors(v) -> list:
    if isinstance(v, torch.Tensor):
        return [v]
    got = getattr(v, "tensors", None)
    return list(got) if isinstance(got, (list, tuple)) else []


@dataclass
class CalibrationSession:
    """The state of one calibration (shared by the clone's override and wrappers)."""

    probes: tuple[int, ...]
    rows: int
    seed: int
    target: float
    block_size: int
    dist1: str
    mask_model: str
    start_decay: float
    steps_total: int
    model: object = None  # the unpatched model (for the recommended setting's patch)
    patch_kwargs: dict = field(default_factory=dict)
    cal: rcal.Calibration | None = None
    forwards: list = field(default_factory=list)
    calls: int = 0
    rec: rcal.Recommendation | None = None
    errors: dict = field(default_factory=dict)  # step -> relative error of the denoised prediction
    check_start: bool = False  # "keep it dense": still check the start setting's output error
    check_error: str = ""  # why the output check could not run

    def record(self, plan, call) -> None:
        geo = rcal.CallGeometry(plan.frames, plan.tokens_per_frame, plan.text_tokens, plan.text_first)
        if self.cal is None:
            aliases = {}
            decays, dens = rcal.decay_candidates(geo, block_size=self.block_size, model=self.mask_model,
                                                 dist1=self.dist1, aliases=aliases,
                                                 extra=(self.start_decay,) + tuple(rcal.AUTHORS_POINTS.values()))
            self.cal = rcal.Calibration(geo, self.block_size, self.mask_model, self.dist1, decays, dens,
                                        self.steps_total, self.probes, aliases=aliases)
        masks = [rcal.mask_for(geo, d, block_size=self.block_size, model=self.mask_model, dist1=self.dist1)
                 for d in self.cal.decays]
        q, k, _ = call.bhld()
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.calls) % (2 ** 63))
        self.calls += 1
        rows = rcal.sample_rows(geo, self.rows, g)
        st = rcal.attention_energy(q, k, rows, geo, masks, self.block_size,
                                   key_padding_mask=plan.key_padding_mask, scale=call.scale)
        self.cal.add(plan.step, plan.block, st)

    def finish(self) -> None:
        """The recommendation, then the radial re-run of every probed model call at it."""
        if self.cal is None:
            self.rec = rcal.recommend({}, (), (), steps_total=self.steps_total)
            return
        self.rec = self.cal.recommend(self.target)
        if (self.rec.dense and not self.check_start) or not self.forwards:
            self.errors = {f.step: 0.0 for f in self.forwards}  # dense is dense
            self.forwards.clear()
            return
        from .radial_patcher import _ApplyModelWrapper  # the patch's own per-call bookkeeping

        if self.rec.dense:  # check_start: what the start setting would change (the benchmark's full cost)
            settings = {"decay_factor": self.start_decay, "dense_blocks": "", "dense_steps_first": 0}
        else:
            settings = {"decay_factor": self.rec.decay, "dense_blocks": self.rec.dense_blocks_text(),
                        "dense_steps_first": self.rec.dense_steps}
        patched = apply_radial_patch(self.model, **{**self.patch_kwargs, **settings, "dense_steps_last": 0})
        override = patched.model_options["transformer_options"][OVERRIDE_KEY]
        num, den = {}, {}
        try:
            for f in self.forwards:
                topts = dict(f.topts)
                topts[OVERRIDE_KEY] = RadialAttentionOverride(override.config, override.previous)
                topts[RUN_KEY] = RunState(f.steps)
                x, *rest = f.args
                out = _ApplyModelWrapper(override.config)(f.executor, _to(x, f.device), *rest, topts, **f.kwargs)
                for a, b in zip(_tensors(out), _tensors(f.dense)):
                    a, b = a.double(), b.to(a.device).double()
                    num[f.step] = num.get(f.step, 0.0) + float((a - b).pow(2).sum())
                    den[f.step] = den.get(f.step, 0.0) + float(b.pow(2).sum())
        except Exception as exc:  # noqa: BLE001 - the measurement stands without the output check
            logger.warning("Radial Attention Calibrate: the radial output check failed (%s: %s); the "
                           "recommendation stands, without its output error.", type(exc).__name__, exc)
            self.check_error = f"{type(exc).__name__}: {exc}"
            num = {}
        finally:
            self.forwards.clear()
        self.errors = {s: math.sqrt(num[s] / den[s]) if den[s] > 0 else 0.0 for s in num}


class CalibrationOverride(RadialAttentionOverride):
    """The patch's override, planning as it does, but measuring instead of sparsifying: at the
    probed steps every call the plan makes sparse is measured, then every call runs dense."""

    session: CalibrationSession | None = None

    def __deepcopy__(self, memo):  # ComfyUI deep-copies model_options on clone: share the session
        return self

    def execute(self, run, plan, call, func, args, kwargs):
        s = self.session
        if plan.video and plan.sparse and s is not None and plan.step in s.probes:
            s.record(plan, call)
        run.count_dense("calibration")
        return self.dense(func, args, kwargs)


class _ProbeApplyModel:
    """APPLY_MODEL wrapper (inside the patch's own): keeps the probed calls' inputs and outputs."""

    def __init__(self, session: CalibrationSession):
        self.session = session

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None,
                 transformer_options=None, **kwargs):
        topts = transformer_options if transformer_options is not None else {}
        fwd = forward_of(topts)  # the patch's wrapper (outside this one) put this call's context here
        out = executor(x, t, c_concat, c_crossattn, control, topts, **kwargs)
        run = topts.get(RUN_KEY)
        step = fwd.step.global_index if fwd is not None and fwd.step is not None else None
        if step is not None and step in self.session.probes:
            run.once("calibrate", logging.INFO,
                     f"Radial Attention Calibrate: sampling dense, measuring the attention at steps "
                     f"{list(self.session.probes)} (the Radial Attention lines of this run describe the "
                     f"mask of the start setting; nothing is sparse)")
            self.session.forwards.append(_Forward(
                step, executor, (_to(x, "cpu"), _clone(t), c_concat, c_crossattn, control), dict(topts),
                dict(kwargs), _to(out, "cpu"), run.steps, _device(x)))
        return out


class _FinishSampler:
    """SAMPLER_SAMPLE wrapper: after the sampler, while the model is still loaded, recommend and
    run the radial check."""

    def __init__(self, session: CalibrationSession):
        self.session = session

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        self.session.finish()
        return out


# ----------------------------------------------------------------------------------- the run
@dataclass
class CalibrationResult:
    image: torch.Tensor  # [1, H, W, 3] float 0..1
    decay_factor: float
    dense_blocks: str
    dense_steps: int
    report: str
    payload: dict
    path: str | None
    session: CalibrationSession


def _start_settings(model) -> dict:
    cfg = get_radial_config(model)
    if cfg is None:
        return {"patched": False, "decay_factor": None, "block_size": 128, "dist1": "full", "family": "auto",
                "backend": "auto", "precision": "exact"}
    fam = cfg.get("family", "auto")
    return {"patched": True, "decay_factor": float(cfg["decay_factor"]), "block_size": int(cfg["block_size"]),
            "dist1": cfg["dist1"], "family": fam if fam in OVERRIDE_FAMILIES else "auto",
            "backend": cfg.get("backend", "auto"), "precision": cfg.get("precision", "exact"),
            "dense_blocks": cfg.get("dense_blocks_text", ""), "dense_steps_first": cfg.get("dense_steps_first", 0)}


def _sample(model, positive, negative, latent: dict, *, seed, steps, cfg, sampler_name, scheduler, sigmas):
    import comfy.sample
    import comfy.samplers

    image = latent["samples"]
    try:
        image = comfy.sample.fix_empty_latent_channels(model, image)
    except Exception as exc:  # noqa: BLE001 - a latent the helper does not know: sample it as it is
        logger.debug("Radial Attention Calibrate: fix_empty_latent_channels: %s", exc)
    noise = comfy.sample.prepare_noise(image, seed, latent.get("batch_index"))
    mask = latent.get("noise_mask")
    callback = _progress(model, (len(sigmas) - 1) if sigmas is not None else steps)
    if sigmas is not None:
        sampler = comfy.samplers.sampler_object(sampler_name)
        return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, image,
                                          noise_mask=mask, callback=callback, disable_pbar=True, seed=seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, image,
                               denoise=1.0, noise_mask=mask, callback=callback, disable_pbar=True, seed=seed)


def _progress(model, steps: int):
    """ComfyUI's own progress bar and latent previews for the sampling (what KSampler shows)."""
    try:
        import latent_preview

        return latent_preview.prepare_callback(model, steps)
    except Exception as exc:  # noqa: BLE001 - no progress display is no reason to stop
        logger.debug("Radial Attention Calibrate: no progress callback (%s)", exc)
        return None


def run_calibration(model, positive, negative, latent: dict, *, seed: int = 0, steps: int = 20, cfg: float = 5.0,
                    sampler_name: str = "euler", scheduler: str = "simple", sigmas=None, probe_steps: str = "auto",
                    query_rows: int = 256, target: float = rcal.DEFAULT_TARGET, save: bool = True,
                    output_dir: str | None = None, check_start: bool = False) -> CalibrationResult:
    """The node's work (see the module doc)."""
    if not hasattr(model, "clone") or not hasattr(model, "model_options"):
        raise ValueError(f"model: expected a ComfyUI MODEL; got {type(model).__name__}. "
                         f"Fix: connect the output of a model loader.")
    if not 0.0 < float(target) < 1.0:
        raise ValueError(f"target: expected a fraction between 0 and 1; got {target!r}. Fix: e.g. 0.95.")
    fam = detect_family(model)
    if fam is None:
        raise ValueError(f"Radial Attention Calibrate: {describe_model(model)} is not a video model this pack "
                         f"supports. Fix: connect a video model (Wan, HunyuanVideo, LTX, ...).")
    start = _start_settings(model)
    n_steps = (len(sigmas) - 1) if sigmas is not None else int(steps)
    probes = parse_probe_steps(probe_steps, n_steps)
    patch_kwargs = dict(block_size=start["block_size"], dist1=start["dist1"], backend=start["backend"],
                        family=start["family"], precision=start["precision"])
    clone = apply_radial_patch(model, decay_factor=start["decay_factor"], dense_blocks="", dense_steps_first=0,
                               dense_steps_last=0, **patch_kwargs)
    topts = clone.model_options["transformer_options"]
    base_override = topts[OVERRIDE_KEY]
    cfg_r = base_override.config
    session = CalibrationSession(probes, int(query_rows), int(seed), float(target), cfg_r.block_size, cfg_r.dist1,
                                 cfg_r.family.mask_model, float(cfg_r.decay_factor), n_steps, model, patch_kwargs,
                                 check_start=bool(check_start))
    ov = CalibrationOverride(cfg_r, base_override.previous)
    ov.session = session
    topts[OVERRIDE_KEY] = ov
    for kind, wrapper in ((pe.WrappersMP.APPLY_MODEL, _ProbeApplyModel(session)),
                          (pe.WrappersMP.SAMPLER_SAMPLE, _FinishSampler(session))):
        clone.remove_wrappers_with_key(kind, CAL_KEY)
        clone.add_wrapper_with_key(kind, CAL_KEY, wrapper)
    t0 = time.perf_counter()
    _sample(clone, positive, negative, latent, seed=int(seed), steps=int(steps), cfg=float(cfg),
            sampler_name=sampler_name, scheduler=scheduler, sigmas=sigmas)
    if session.rec is None:  # a sampler that ran no SAMPLER_SAMPLE wrapper
        session.finish()
    seconds = time.perf_counter() - t0
    return _result(session, cfg_r.family, cfg_r, start, latent, seconds, save, output_dir)


def _result(session: CalibrationSession, fam, cfg_r, start: dict, latent: dict, seconds: float, save: bool,
            output_dir) -> CalibrationResult:
    rec = session.rec
    cal = session.cal
    num_blocks = fam.num_blocks
    if rec.dense:
        decay_out = float(cfg_r.decay_factor)
        blocks_out = str(num_blocks)
        steps_out = session.steps_total
    else:
        decay_out, blocks_out, steps_out = float(rec.decay), rec.dense_blocks_text(), int(rec.dense_steps)
    figures = cal.figures(rec, session.target) if cal is not None else {"target": session.target}
    shown = rec.decay if not rec.dense else cfg_r.decay_factor
    if cal is not None:
        later = [s for s in cal.probe_steps if s >= (0 if rec.dense else rec.dense_steps)] or list(cal.probe_steps)
        per = {}
        for (s, b), v in cal.kept_at(shown).items():
            if s in later:
                per[b] = min(per.get(b, 1.0), v)
        figures["kept_per_block"] = {str(b): v for b, v in sorted(per.items())}
        by_step = {}
        for (st, b), v in sorted(cal.kept_at(shown).items()):
            by_step.setdefault(str(st), {})[str(b)] = v
        figures["kept_per_step_and_block"] = by_step  # at the decay shown (the recommendation's)
        figures["kept_per_block_decay"] = float(shown)
    figures["dense_blocks"] = list(rec.dense_blocks) if not rec.dense else list(range(num_blocks))
    figures["output_relative_error"] = {str(s): e for s, e in sorted(session.errors.items())}
    samples = latent.get("samples")
    size = list(getattr(samples, "shape", ())) if isinstance(samples, torch.Tensor) else []
    geo = cal.geo if cal is not None else None
    rec_d = {"dense": rec.dense, "decay": rec.decay, "decay_factor": decay_out, "dense_blocks": blocks_out,
             "dense_steps": steps_out, "work": rec.work, "density": rec.density, "kept_min": rec.kept_min,
             "why": rec.why}
    if session.check_error:
        figures["output_check_error"] = session.check_error
    payload = {
        "kind": "radial_attention_calibration", "version": 1,
        "model": describe_model(session.model), "family": fam.family, "variant": fam.variant,
        "other_tokens": fam.other_tokens,
        "latent": size,
        "geometry": ({"frames": geo.frames, "tokens_per_frame": geo.tokens_per_frame, "text_tokens": geo.text_tokens,
                      "text_first": geo.text_first} if geo is not None else None),
        "settings": {"block_size": cfg_r.block_size, "dist1": cfg_r.dist1, "mask_model": cfg_r.family.mask_model,
                     "start": {k: v for k, v in start.items()}, "target": session.target,
                     "query_rows": session.rows, "seed": session.seed, "steps": session.steps_total,
                     "probe_steps": list(session.probes)},
        "recommendation": rec_d,
        "figures": figures,
        "seconds": seconds,
    }
    report = report_text(payload)
    title = (f"Radial Attention Calibrate: {fam.variant}"
             + (f", {geo.frames} frames x {geo.tokens_per_frame} tokens" if geo is not None else "")
             + (f" -> decay {decay_out:g}, dense blocks '{blocks_out}', dense steps {steps_out}" if not rec.dense
                else " -> keep it dense"))
    picture = calibration_plot.render(figures, rec_d, title=title)
    image = (picture.to(torch.float32) / 255.0).unsqueeze(0)
    path = None
    if save:
        path = _save(payload, fam.family, geo, output_dir)
        report += f"\nSaved: {path}"
    logger.info("Radial Attention Calibrate: %s", report.replace("\n", "; "))
    return CalibrationResult(image, decay_out, blocks_out, steps_out, report, payload, path, session)


def _save(payload: dict, family: str, geo, output_dir) -> str:
    if output_dir is None:
        import folder_paths

        output_dir = folder_paths.get_output_directory()
    folder = Path(output_dir) / RESULT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shape = f"{geo.frames}x{geo.tokens_per_frame}" if geo is not None else "none"
    path = folder / f"calibration_{family}_{shape}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    n = 1
    while path.exists():
        path = folder / f"calibration_{family}_{shape}_{time.strftime('%Y%m%d-%H%M%S')}_{n}.json"
        n += 1
    rcal.save_result(path, payload)
    return str(path)


def read_calibration(name: str, output_dir: str | None = None) -> dict:
    """The recommended Patch settings of a saved calibration (a path, or a file name under the
    output folder's ``radial_attention/``): see ``radial_core.calibration.read_result``."""
    p = Path(name)
    if not p.is_absolute() and not p.exists():
        if output_dir is None:
            import folder_paths

            output_dir = folder_paths.get_output_directory()
        p = Path(output_dir) / RESULT_DIR / name
    return rcal.read_result(p)


def report_text(payload: dict) -> str:
    rec = payload["recommendation"]
    fig = payload["figures"]
    geo = payload.get("geometry") or {}
    lines = [f"Radial Attention Calibrate: {payload['variant']}"
             + (f", {geo.get('frames')} frames x {geo.get('tokens_per_frame')} tokens"
                + (f" + {geo.get('text_tokens')} {payload.get('other_tokens', 'other')} tokens"
                   if geo.get("text_tokens") else "") if geo else "")
             + f", block {payload['settings']['block_size']}, target {payload['settings']['target']:.0%} kept energy."]
    if rec["dense"]:
        lines.append(f"Recommendation: keep it dense. Why: {rec['why']}.")
    else:
        lines.append(f"Recommendation: decay_factor {rec['decay_factor']:g}, dense_blocks '{rec['dense_blocks']}', "
                     f"dense_steps_first {rec['dense_steps']} (mask density {rec['density']:.3f}, attention work "
                     f"left {rec['work']:.0%}, worst kept energy {rec['kept_min']:.1%}).")
    rt, rs = fig.get("temporal_rate_per_frame"), fig.get("spatial_rate_per_token")
    if rt is not None:
        half = f", halves every {math.log(2) / rt:.1f} frames" if rt > 1e-6 else ""
        lines.append(f"Fitted energy decay: {rt:.3f} per frame of distance{half}"
                     + (f"; {rs:.4f} per token of in-frame distance" if rs is not None else "") + ".")
    errs = fig.get("output_relative_error") or {}
    if errs and (not rec["dense"] or any(errs.values())):
        lines.append(("Denoised prediction, radial vs dense (relative error) at probed steps"
                      + (" (start setting)" if rec["dense"] else "") + ": ")
                     + ", ".join(f"step {s}: {e:.2e}" for s, e in errs.items()) + ".")
    pts = fig.get("authors_points") or {}
    parts = []
    for label, p in pts.items():
        if p.get("kept_mean") is not None:
            parts.append(f"{label} decay {p['decay']:g} (density {p['density']:.3f}) keeps {p['kept_mean']:.1%} "
                         f"on average, {p['kept_min']:.1%} in the worst block and step")
    if parts:
        lines.append("The authors' operating points on this model: " + "; ".join(parts) + ".")
    start = payload["settings"].get("start") or {}
    if start.get("patched"):
        lines.append(f"Start point (the connected patch): decay {start.get('decay_factor'):g}, dense_blocks "
                     f"'{start.get('dense_blocks', '')}', dense_steps_first {start.get('dense_steps_first', 0)}.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- the node
def _sampler_options():
    import comfy.samplers

    return list(comfy.samplers.KSampler.SAMPLERS), list(comfy.samplers.KSampler.SCHEDULERS)


class RadialAttentionCalibrate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        samplers, schedulers = _sampler_options()
        return io.Schema(
            node_id="RadialAttentionCalibrate",
            display_name="Radial Attention Calibrate",
            category=CATEGORY,
            description=(
                "Measures on your model, at your size and prompt, how much attention energy the radial "
                "mask keeps, and recommends the Patch settings: the lowest-density decay factor whose kept "
                "energy meets the target at every probed step in every block not made dense. Samples "
                "dense once (plus one radial model call per probed step to check the output)."
            ),
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The video model; if it comes from Radial Attention Patch, "
                               "that patch's block size, distance-1 rule and decay are the start point."),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent_image", tooltip="An empty latent of the size you will render."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True),
                io.Int.Input("steps", default=20, min=1, max=1000,
                             tooltip="Steps of the schedule to probe (ignored when sigmas is connected)."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01),
                Choice("sampler_name", options=samplers, default="euler"),
                Choice("scheduler", options=schedulers, default="simple"),
                io.String.Input("probe_steps", default="auto",
                                tooltip="Steps to measure (0-based): 'auto' = 0, 1, a quarter, half way and "
                                "the last, or a list such as '0,1,5,10'."),
                io.Int.Input("query_rows", default=256, min=16, max=MAX_ROWS, step=16,
                             tooltip="Query rows sampled per attention call (exact softmax over all keys)."),
                io.Float.Input("target", default=rcal.DEFAULT_TARGET, min=0.5, max=0.999, step=0.005,
                               tooltip="Share of the attention energy the mask must keep in every probed "
                               "block and step."),
                io.Sigmas.Input("sigmas", optional=True,
                                tooltip="Optional: probe this schedule instead of steps + scheduler."),
            ],
            outputs=[
                io.Image.Output(display_name="picture",
                                tooltip="Energy vs frame distance, kept energy vs density, kept energy per block."),
                io.Float.Output(display_name="decay_factor", tooltip="Connect to the Patch node's decay_factor."),
                io.String.Output(display_name="dense_blocks", tooltip="Connect to the Patch node's dense_blocks."),
                io.Int.Output(display_name="dense_steps", tooltip="Connect to the Patch node's dense_steps_first."),
                io.String.Output(display_name="report", tooltip="Fitted decay rates, the recommendation and "
                                 "how this model compares with the authors' operating points."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed: int, steps: int, cfg: float,
                sampler_name: str, scheduler: str, probe_steps: str, query_rows: int, target: float,
                sigmas=None) -> io.NodeOutput:
        res = run_calibration(model, positive, negative, latent_image, seed=seed, steps=steps, cfg=cfg,
                              sampler_name=sampler_name, scheduler=scheduler, sigmas=sigmas,
                              probe_steps=probe_steps, query_rows=query_rows, target=target)
        return io.NodeOutput(res.image, res.decay_factor, res.dense_blocks, res.dense_steps, res.report,
                             ui=ui.PreviewImage(res.image, cls=cls))


def latest_calibration(output_dir: str | None = None, family: str | None = None) -> Path:
    """The newest saved calibration (of ``family`` when given) in the output folder."""
    if output_dir is None:
        import folder_paths

        output_dir = folder_paths.get_output_directory()
    folder = Path(output_dir) / RESULT_DIR
    pattern = f"calibration_{family}_*.json" if family else "calibration_*.json"
    files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not files:
        raise ValueError(f"calibration: no saved calibration{' of ' + family if family else ''} in {folder}. "
                         f"Fix: run Radial Attention Calibrate first (it saves its result there).")
    return files[-1]


class RadialAttentionLoadCalibration(io.ComfyNode):
    """Reads a saved calibration back: its values connect to Radial Attention Patch (or the Radial
    LoRA Loader's overrides), so a model is calibrated once and rendered many times."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RadialAttentionLoadCalibration",
            display_name="Radial Attention Load Calibration",
            category=CATEGORY,
            description=("Reads a result saved by Radial Attention Calibrate (output/radial_attention/"
                         "calibration_*.json) and outputs its recommended decay factor, dense blocks and "
                         "dense steps for Radial Attention Patch or the Radial LoRA Loader."),
            inputs=[
                io.String.Input("calibration", default="latest",
                                tooltip="'latest' = the newest saved calibration; or its file name in "
                                "output/radial_attention/, or a full path."),
            ],
            outputs=[
                io.Float.Output(display_name="decay_factor"),
                io.String.Output(display_name="dense_blocks"),
                io.Int.Output(display_name="dense_steps"),
                io.String.Output(display_name="report"),
            ],
        )

    @classmethod
    def execute(cls, calibration: str) -> io.NodeOutput:
        name = (calibration or "").strip()
        path = latest_calibration() if name.lower() in ("", "latest") else name
        s = read_calibration(str(path))
        report = (f"{path}: {s['family']}, decay_factor {s['decay_factor']:g}, dense_blocks '{s['dense_blocks']}', "
                  f"dense_steps_first {s['dense_steps_first']} (block size {s['block_size']}, dist1 {s['dist1']}: "
                  f"set those on the Patch too)")
        logger.info("Radial Attention Load Calibration: %s", report)
        return io.NodeOutput(s["decay_factor"], s["dense_blocks"], s["dense_steps_first"], report)

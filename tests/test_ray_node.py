"""Radial Attention Patch (Ray): queue-time checks, raylight's settings, and the worker bootstrap.

raylight needs CUDA and NCCL, so its actors are stood in for here by objects with raylight's
contract (``model_function_runner(fn, *args)`` sets ``model = fn(model, *args)``;
``get_parallel_dict()``). The bootstrap runs in a fresh Python process whose ``sys.modules`` has
no trace of the pack, from a cloudpickle made as Ray makes it, which is how a Ray worker gets it.
Where ``ray`` is installed, the same runs in real Ray actors on the CPU.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import types

import pytest

import helpers_models as hm

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def mods(comfy):
    class M:
        node = comfy.pack_module("nodes.ray_node")
        patch_node = comfy.pack_module("nodes.patch_node")
        patcher = comfy.pack_module("nodes.radial_patcher")
        sp = comfy.pack_module("nodes.sequence_parallel")
        bootstrap = comfy.pack_module("nodes.ray_bootstrap")
        extension = comfy.pack_module("nodes.extension")

    return M


class _Remote:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)  # in-process: the "future" is the value


class FakeWorker:
    """raylight's RayWorker contract, in-process."""

    def __init__(self, model, parallel):
        self.model, self.parallel = model, parallel
        self.model_function_runner = _Remote(self._run)
        self.get_parallel_dict = _Remote(lambda: dict(self.parallel))

    def _run(self, fn, *args, **kwargs):
        self.model = fn(self.model, *args, **kwargs)


@pytest.fixture()
def fake_ray(monkeypatch):
    pickled = []
    ray = types.ModuleType("ray")
    ray.get = lambda x: x
    ray.cloudpickle = types.SimpleNamespace(register_pickle_by_value=pickled.append)
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setitem(sys.modules, "ray.cloudpickle", ray.cloudpickle)
    return pickled


def _inputs(**kw):
    base = dict(decay_factor=0.0, block_size=128, dense_blocks="1", dense_steps_first=0, dense_steps_last=0,
                dist1="full", backend="auto", family="auto", precision="exact")
    base.update(kw)
    return base


XDIT = {"is_xdit": True, "ulysses_degree": 1, "ring_degree": 1, "cfg_degree": 1, "attention": "TORCH"}


# ---------------------------------------------------------------------------- queue time
def test_same_inputs_and_checks_as_radial_attention_patch(mods):
    ray_schema = mods.node.RadialAttentionPatchRay.define_schema()
    patch_schema = mods.patch_node.RadialAttentionPatch.define_schema()
    assert [i.id for i in ray_schema.inputs] == ["ray_actors"] + [i.id for i in patch_schema.inputs][1:]
    assert ray_schema.inputs[0].get_io_type() == "RAY_ACTORS" == ray_schema.outputs[0].get_io_type()
    node = mods.node.RadialAttentionPatchRay
    assert node.validate_inputs("1") is True and node.validate_inputs("0,1,39") is True
    for bad in ("abc", "3-1"):
        problem = node.validate_inputs(bad)
        assert isinstance(problem, str) and problem == mods.patch_node.RadialAttentionPatch.validate_inputs(bad)


@pytest.mark.parametrize("parallel, heads, needle", [
    ({**XDIT, "ring_degree": 2, "ulysses_degree": 2}, None, "ring_degree 1 and ulysses_degree 4"),
    ({**XDIT, "ulysses_degree": 3}, 40, "[2, 4, 5, 8]"),
    ({**XDIT, "ulysses_degree": 8}, 12, "[2, 3, 4, 6]"),
])
def test_sequence_parallel_settings_refused_with_the_fix(mods, parallel, heads, needle):
    problem = mods.sp.sequence_parallel_problem(parallel, heads)
    assert problem is not None and needle in problem, problem


@pytest.mark.parametrize("parallel, heads", [({**XDIT, "ulysses_degree": 4}, 40), ({**XDIT, "ulysses_degree": 8}, 24),
                                             ({"is_xdit": False, "ring_degree": 2}, 5), (None, None)])
def test_sequence_parallel_settings_accepted(mods, parallel, heads):
    assert mods.sp.sequence_parallel_problem(parallel, heads) is None


def test_registered_only_where_raylight_imports(mods, monkeypatch):
    ext = mods.extension.RadialAttentionExtension()
    names = lambda: [n.__name__ for n in asyncio.run(ext.get_node_list())]  # noqa: E731
    monkeypatch.setattr(mods.node, "raylight_available", lambda: False)
    assert "RadialAttentionPatchRay" not in names()
    monkeypatch.setattr(mods.node, "raylight_available", lambda: True)
    assert "RadialAttentionPatchRay" in names()


# ---------------------------------------------------------------------------- run time, in-process
def test_every_worker_patched_by_raylights_contract(mods, fake_ray):
    base = hm.load_model("wan_t2v")
    workers = [FakeWorker(base, XDIT) for _ in range(2)]
    out = mods.node.RadialAttentionPatchRay.execute({"workers": workers}, **_inputs(dense_blocks="0"))
    assert out.result[0]["workers"] == workers
    assert fake_ray == [mods.bootstrap], "the bootstrap module is pickled by value"
    import comfy.patcher_extension as pe

    for w in workers:
        assert w.model is not base
        cfg = mods.patcher.get_radial_config(w.model)
        assert cfg is not None and cfg["family"] == "wan21" and cfg["dense_blocks"] == []
        assert w.model.get_wrappers(pe.WrappersMP.DIFFUSION_MODEL, mods.sp.SP_KEY)


@pytest.mark.parametrize("parallel, needle", [({**XDIT, "ring_degree": 2}, "ring_degree"),
                                              ({**XDIT, "ulysses_degree": 2}, "1 attention heads")])
def test_run_time_refusals_name_the_fix(mods, fake_ray, parallel, needle):
    workers = [FakeWorker(hm.load_model("wan_t2v"), parallel)]
    with pytest.raises(ValueError, match="Radial Attention Patch \\(Ray\\)") as err:
        mods.node.RadialAttentionPatchRay.execute({"workers": workers}, **_inputs())
    assert needle in str(err.value) and "Fix" in str(err.value)


def test_bad_settings_stop_before_any_worker(mods, fake_ray):
    worker = FakeWorker(hm.load_model("wan_t2v"), XDIT)
    with pytest.raises(ValueError, match="dense_blocks"):
        mods.node.RadialAttentionPatchRay.execute({"workers": [worker]}, **_inputs(dense_blocks="x"))
    with pytest.raises(ValueError, match="no workers"):
        mods.node.RadialAttentionPatchRay.execute({"workers": []}, **_inputs())
    assert fake_ray == []


def test_worker_settings_read_the_old_precision_name(mods):
    """A workflow saved with precision "fp8" (the old name of "int8-qk") reaches the workers as the new name."""
    for value, read in (("fp8", "int8-qk"), ("int8-qk", "int8-qk"), ("exact", "exact")):
        assert mods.node.worker_settings(0.0, 64, "0", 0, 0, "full", "pytorch", precision=value)["precision"] == read
    with pytest.raises(ValueError, match="precision"):
        mods.node.worker_settings(0.0, 64, "0", 0, 0, "full", "pytorch", precision="fp16")


# ---------------------------------------------------------------------------- a fresh process
CHILD = textwrap.dedent("""
    import pickle, sys
    comfy_dir, model_path, blob_path = sys.argv[1:4]
    sys.path.insert(0, comfy_dir)
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.sd
    import comfy.patcher_extension as pe
    fn, where, settings = pickle.loads(open(blob_path, "rb").read())
    pack = where["pack_dir"].replace(".", "_x_")
    assert not [m for m in sys.modules if m.startswith(pack) or "radial" in m], "the pack was already imported"
    model = comfy.sd.load_diffusion_model(model_path)
    patched = fn(model, where, settings)
    assert pack in sys.modules, "loaded under ComfyUI's module name"
    cfg = sys.modules[pack + ".nodes.radial_patcher"].get_radial_config(patched)
    assert cfg is not None and cfg["family"] == "wan21", cfg
    assert patched.get_wrappers(pe.WrappersMP.DIFFUSION_MODEL, "radial_attention_sp")
    print("PATCHED", cfg["block_size"])
""")


def test_worker_bootstrap_in_a_fresh_process_without_the_pack(mods, comfy, tmp_path):
    cloudpickle = pytest.importorskip("cloudpickle", reason="cloudpickle (requirements-dev.txt; Ray ships its own) "
                                      "makes the by-value pickle a Ray worker receives")
    tm = hm.tiny_models_module()
    model_path = tm.save(tm.wan_state_dict("wan_t2v"), tmp_path / "wan.safetensors")
    settings = dict(mods.node.worker_settings(0.0, 64, "0", 0, 0, "full", "pytorch"), parallel=XDIT)
    cloudpickle.register_pickle_by_value(mods.bootstrap)
    try:
        blob = cloudpickle.dumps((mods.bootstrap.apply_in_worker, mods.node.worker_location(), settings))
    finally:
        cloudpickle.unregister_pickle_by_value(mods.bootstrap)
    (tmp_path / "fn.pkl").write_bytes(blob)
    # a worker process: ComfyUI importable (raylight's runtime_env puts its root on PYTHONPATH),
    # started elsewhere than the pack's folder
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(comfy.dir), str(model_path), str(tmp_path / "fn.pkl")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "PATCHED 64" in proc.stdout, proc.stderr[-3000:]


def test_worker_bootstrap_in_ray_cpu_actors(mods, comfy, tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (a large wheel kept out of CI's dev "
                              "requirements); `pip install ray` runs this on CPU actors")
    tm = hm.tiny_models_module()
    model_path = str(tm.save(tm.wan_state_dict("wan_t2v"), tmp_path / "wan.safetensors"))
    comfy_dir = str(comfy.dir)

    class Worker:  # raylight's RayWorker contract, in a Ray actor process
        def __init__(self):
            sys.path.insert(0, comfy_dir)
            import comfy.options

            comfy.options.enable_args_parsing(False)
            import comfy.cli_args

            comfy.cli_args.args.cpu = True
            import comfy.sd

            self.model = comfy.sd.load_diffusion_model(model_path)

        def get_parallel_dict(self):
            return dict(XDIT)

        def model_function_runner(self, fn, *args, **kwargs):
            self.model = fn(self.model, *args, **kwargs)

        def radial(self):
            opts = self.model.model_options["transformer_options"]
            return opts.get("radial_attention")

    path = os.pathsep.join(p for p in (comfy_dir, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        actors = [ray.remote(Worker).remote() for _ in range(2)]
        mods.node.RadialAttentionPatchRay.execute({"workers": actors}, **_inputs(block_size=64))
        cfgs = ray.get([a.radial.remote() for a in actors])
        assert all(c is not None and c["block_size"] == 64 for c in cfgs), cfgs
    finally:
        ray.shutdown()


# ---------------------------------------------------------------------------- inside raylight's attention
def test_raylights_attention_runs_radial_in_the_worker(mods, comfy, tmp_path, monkeypatch):
    """The worker path end to end on one CPU rank: raylight's model code drops ComfyUI's
    ``transformer_options`` and calls its module-level ``xfuser_optimized_attention`` (here a fake
    raylight module whose function is ComfyUI's dense attention); after the Ray node's worker patch
    the video self-attention calls of the transformer blocks run the pack's sequence-parallel call
    (Ulysses group of one over gloo) and sample what the one-GPU patch samples, while cross-attention
    and the dense block stay on raylight's function."""
    import torch
    import torch.distributed as dist

    yc_globals = pytest.importorskip("yunchang.globals", reason="yunchang (requirements-dev.txt) holds raylight's "
                                     "process groups")
    import comfy.ldm.wan.model as wan_model

    tm = hm.tiny_models_module()
    path = tm.save(tm.wan_state_dict("wan_t2v"), tmp_path / "wan.safetensors")
    lat = hm.latent("wan_t2v", frames=5, height=16, width=16)
    settings = mods.node.worker_settings(0.0, 64, "1", 0, 0, "full", "pytorch")  # block 0 dense

    one_gpu = mods.patcher.apply_radial_patch(tm.load_with_comfy(path), **settings)
    want = hm.sample(one_gpu, "wan_t2v", lat, steps=2)

    dense = wan_model.optimized_attention
    raylight_calls = []

    def xfuser_optimized_attention(q, k, v, heads, *args, **kwargs):  # raylight's signature, no options
        raylight_calls.append((q.shape[1], k.shape[1]))
        return dense(q, k, v, heads)

    fake = types.ModuleType("raylight.diffusion_models.wan.xdit_context_parallel")
    fake.xfuser_optimized_attention = xfuser_optimized_attention
    for name in ("raylight", "raylight.diffusion_models", "raylight.diffusion_models.wan"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    # raylight's usp_*_forward: the attention goes to the module's function, transformer_options dropped
    monkeypatch.setattr(wan_model, "optimized_attention",
                        lambda q, k, v, heads, *a, transformer_options=None, **kw: fake.xfuser_optimized_attention(
                            q, k, v, heads=heads))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(yc_globals.PROCESS_GROUP, "ULYSSES_PG", dist.new_group([0]), raising=False)
        monkeypatch.setattr(yc_globals.PROCESS_GROUP, "RING_PG", None, raising=False)
        worker = FakeWorker(tm.load_with_comfy(path), XDIT)
        worker.model_function_runner.remote(mods.bootstrap.apply_in_worker, mods.node.worker_location(),
                                            dict(settings, parallel=XDIT))
        assert isinstance(fake.xfuser_optimized_attention, mods.sp.RadialUlyssesAttention)
        got = hm.sample(worker.model, "wan_t2v", lat, steps=2)
    finally:
        dist.destroy_process_group()
    video = 5 * 8 * 8
    # 2 steps x cond/uncond batch x 2 blocks: block 0 is dense (raylight's), block 1 radial (ours)
    self_calls = [c for c in raylight_calls if c == (video, video)]
    assert self_calls and len(self_calls) * 2 == len([c for c in raylight_calls if c[1] != video]), raylight_calls
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

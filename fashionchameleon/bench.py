"""``python -m fashionchameleon bench``: speed and memory, side by side in one process.

On `tiny` (the default) it drives the real ``Session`` end to end -- denoise, commit, decode and H.264
segment encoding -- and reports frames/s with each stage's share, time to first chunk, late vs. early chunk
time, memory growth, the cost of a garment switch and how many blocks it waits, the student's speed-up over
the teacher, and codec throughput. With ``--config wan2.1-1.3b|wan2.2-ti2v-5b --device cuda`` it measures
the DiT streaming loop (the same cached passes) at the real shapes with random weights in bf16; that path
imports only torch and numpy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import threading
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="preset (default: the checkpoint's; the embedded model's "
                                                  "when no checkpoint is given)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the embedded tiny-v2 model; "
                                                      "random weights for the real shapes)")
    p.add_argument("--codec-folder", default=None, help="codec folder (default: the shipped codec the checkpoint was trained on)")
    p.add_argument("--blocks", type=int, default=120, help="blocks streamed (chunks 10-30 are 'early', the last 20 'late')")
    p.add_argument("--switch-every", type=int, default=10, help="post a garment switch mid-block every N blocks")
    p.add_argument("--switch-guidance", type=float, default=None,
                   help="stream with this guidance away from the old garment after a switch (default: the config's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--codec", action="store_true", help="measure the codec only")
    p.add_argument("--no-teacher", action="store_true", help="skip the teacher comparison")
    p.add_argument("--json", action="store_true", help="one line of JSON on stdout")


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_codec(codec, resolution: tuple[int, int], device: str, frames: int = 49, repeats: int = 3) -> dict:
    import torch

    w, h = resolution
    video = torch.rand(1, 3, frames, h, w, device=device) * 2 - 1
    with torch.no_grad():
        codec.encode(video[:, :, :5])  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            z = codec.encode(video)
        enc = frames * repeats / (time.perf_counter() - t0)
        dec = codec.stream_decoder()
        dec.decode(z[:, :, :3])
        n, t0 = 0, time.perf_counter()
        for _ in range(repeats):
            d = codec.stream_decoder()
            for i in range(0, z.shape[2], 3):
                n += d.decode(z[:, :, i:i + 3]).shape[2]
        decode = n / (time.perf_counter() - t0)
    return {"codec_encode_fps": enc, "codec_decode_fps": decode}


def _teacher_speedup(model, preset, device: str, repeats: int = 5) -> dict:
    """Teacher: 50 Euler steps with CFG over a whole training-length clip; student: the same length streamed
    block by block (4 steps, and a commit before each next block). Latent generation only, same machine,
    same weights; medians of ``repeats`` interleaved runs."""
    import torch

    from .model import causal
    from .model.kv_cache import WindowPolicy
    from .model.schedule import stream_sigmas
    from .training.flow import Conditions, sample_teacher

    c = preset.latent_channels
    w, h = preset.resolution
    hw = (h // preset.spatial_compression, w // preset.spatial_compression)
    dtype = next(model.parameters()).dtype
    frames = preset.train_latent_frames
    text = model.embed_text([preset.model.prompt_vocab[0]]) if preset.model.prompt_vocab else \
        torch.zeros(1, 8, preset.model.text_dim, device=device, dtype=dtype)
    if not preset.model.prompt_vocab:
        text = model.embed_text(text)
    cond = Conditions(torch.randn(1, c, 1, *hw, device=device, dtype=dtype),
                      torch.randn(1, c, 1, *hw, device=device, dtype=dtype), text)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    s = preset.stream
    sig = stream_sigmas(s)

    def teacher_run() -> None:
        sample_teacher(model, cond, (1, c, frames, *hw), steps=50, guidance=3.0)

    def student_run() -> None:
        # as a Session streams: a block is committed when the next one is wanted, so the last one never is
        cache = causal.new_cache(model, hw, WindowPolicy(s.sink_frames, s.window_frames))
        causal.prefill(model, cache, cond.prefix, text)
        for k in range(-(-frames // s.block_frames)):
            if k:
                causal.commit(model, cache, x0, text)
            noise = torch.randn(1, c, s.block_frames, *hw, device=device, dtype=dtype)
            x0 = causal.denoise_block(model, cache, noise, sig, text)

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    with torch.no_grad():
        student_run()                       # warm-up (allocator, kernels) so neither side pays it
        # interleaved repeats, medians: one timing of a sub-second student run swings with the machine's load
        runs = [(timed(teacher_run), timed(student_run)) for _ in range(repeats)]
    teacher = statistics.median(t for t, _ in runs)
    student = statistics.median(st for _, st in runs)
    return {"teacher_s": teacher, "student_s": student, "teacher_speedup": teacher / student}


def bench_stream(gen, blocks: int, switch_every: int) -> dict:
    """Stream ``blocks`` blocks through a real Session with H.264 segments, switching now and then."""

    from .data.world import make_sample
    from .media import encode_segment

    # inputs from the world the preset was trained on (v2: portrait frames at its resolution)
    size, version = gen.preset.world_size, gen.preset.world_version
    s0, s1 = (make_sample(seed, num_frames=1, size=size, version=version) for seed in (500_000, 500_001))
    garments = [s0.garment_image, s1.garment_image]
    t_start = time.perf_counter()
    session = gen.session(s0.reference, s0.garment_image, seed=0)
    stages = {"denoise": 0.0, "commit": 0.0, "decode": 0.0, "reschedule": 0.0, "h264": 0.0}
    chunk_times, switch_blocks, frames, rss = [], [], 0, {}
    first_chunk = None
    posted: list[str] = []
    timers = []
    with session:
        it = iter(session)
        for k in range(blocks):
            t0 = time.perf_counter()
            if switch_every and k % switch_every == switch_every - 1 and k < blocks - 1:   # a next block applies it
                # post mid-block from another thread, as a user's click would arrive
                def post(k=k):
                    posted.append(session.post_switch(garments[(k // switch_every) % 2], f"g{k}"))
                timer = threading.Timer(0.05, post)
                timer.start()
                timers.append(timer)
            chunk = next(it)
            t1 = time.perf_counter()
            encode_segment(chunk.frames, gen.preset.fps)
            t2 = time.perf_counter()
            if first_chunk is None:
                first_chunk = t2 - t_start
            for key in ("denoise", "commit", "decode", "reschedule"):
                stages[key] += chunk.timings[key]
            stages["h264"] += t2 - t1
            chunk_times.append(t2 - t0)
            if any(e["kind"] == "switch" for e in chunk.events):
                switch_blocks.append(t2 - t0)
            frames += len(chunk.frames)
            if k + 1 in (20, blocks // 2, blocks) or (k + 1) % 50 == 0:    # a curve, not two points
                rss[k + 1] = _rss_bytes()
        for t in timers:
            t.join()
    events = {e["id"]: e for e in session.events}      # after close: also the switches that never applied
    total = sum(chunk_times)
    switches = [e for e in events.values() if e["kind"] == "switch" and e["status"] == "applied"]
    latency_blocks = [events[eid]["blocks_waited"] for eid in posted if events[eid]["status"] == "applied"]
    median_block = statistics.median(chunk_times[1:])
    sw_cost = stages["reschedule"] / max(1, len(switches))
    early = statistics.median(chunk_times[10:30])
    late = statistics.median(chunk_times[-20:])
    return {
        "fps": frames / total,
        "first_chunk_s": first_chunk,
        "late_early_chunk_ratio": late / early,
        "memory_growth_ratio": rss[blocks] / rss[20],
        # a leak keeps growing; allocator and encoder warm-up stop: the second half of the run tells them apart
        "memory_growth_second_half": rss[blocks] / rss[blocks // 2],
        "switch_overhead_ratio": sw_cost / median_block,
        # the whole block a switch applies at (rescheduling, and guidance's extra passes when it is on)
        "switch_block_ratio": statistics.median(switch_blocks) / median_block if switch_blocks else None,
        "switch_latency_blocks": max(latency_blocks) if latency_blocks else None,
        "switches": len(switches),
        "frames": frames,
        "stage_share": {k: v / total for k, v in stages.items()},
        "median_chunk_s": median_block,
        "rss_mb": {str(k): v / 2**20 for k, v in rss.items()},
        "cache_bytes": session.cache.memory_bytes(),
    }


def bench_real_shapes(name: str, device: str, blocks: int) -> dict:
    """DiT streaming at the real shapes, random weights, bf16: the cached passes of a block (4 steps + commit)."""
    import torch

    from .config import get_preset
    from .model import causal
    from .model.dit import WanDiT
    from .model.kv_cache import WindowPolicy

    preset = get_preset(name)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device("meta"):
        model = WanDiT(preset.model)
    model = model.to_empty(device=device).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.eval()
    s = preset.stream
    w, h = preset.resolution
    hw = (h // preset.spatial_compression, w // preset.spatial_compression)
    c = preset.latent_channels
    text = model.embed_text(torch.zeros(1, 512, preset.model.text_dim, device=device, dtype=dtype))
    sig = torch.tensor(s.denoise_timesteps, dtype=torch.float32) / 1000.0
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.no_grad():
        t_start = time.perf_counter()
        cache = causal.new_cache(model, hw, WindowPolicy(s.sink_frames, s.window_frames))
        causal.prefill(model, cache, torch.randn(1, c, 2, *hw, device=device, dtype=dtype), text)
        first = None
        for k in range(blocks):
            sync()
            t0 = time.perf_counter()
            noise = torch.randn(1, c, s.block_frames, *hw, device=device, dtype=dtype)
            x0 = causal.denoise_block(model, cache, noise, sig, text)
            causal.commit(model, cache, x0, text)
            sync()
            times.append(time.perf_counter() - t0)
            if first is None:
                first = time.perf_counter() - t_start
    video_frames = s.block_frames * 4
    steady = statistics.median(times[3:]) if len(times) > 4 else statistics.median(times)
    out = {"fps": video_frames / steady, "first_chunk_s": first,
           "late_early_chunk_ratio": statistics.median(times[-5:]) / statistics.median(times[2:7]) if len(times) >= 10 else None,
           "memory_growth_ratio": None, "switch_overhead_ratio": None, "switch_block_ratio": None,
           "switch_latency_blocks": None,
           "teacher_speedup": None, "codec_decode_fps": None, "codec_encode_fps": None,
           "note": "DiT only (denoise + commit), random bf16 weights; no VAE or H.264"}
    if device.startswith("cuda"):
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    from .config import get_preset
    from .model.loading import read_checkpoint_config
    from .streaming.generator import DEFAULT_CHECKPOINT, DEFAULT_PRESET

    config = args.config
    if config is None:      # the preset of the weights that will run, so the report names what it measured
        ckpt = args.checkpoint or DEFAULT_CHECKPOINT
        stored = read_checkpoint_config(ckpt) if os.path.isfile(os.path.join(ckpt, "config.json")) else {}
        config = stored.get("preset", {}).get("name", DEFAULT_PRESET)
    preset = get_preset(config)
    w, h = preset.resolution
    result = {"config": preset.name, "device": args.device, "resolution": f"{w}x{h}",
              "steps": len(preset.stream.denoise_timesteps), "block_frames": preset.stream.block_frames,
              "threads": torch.get_num_threads(), "checkpoint_sha": None}
    if not preset.model.prompt_vocab:     # real shapes; the tiny family (tiny, micro, tiny-v2-*) streams for real
        _log(f"bench {preset.name} on {args.device}: DiT streaming with random weights")
        result.update(bench_real_shapes(preset.name, args.device, min(args.blocks, 30)))
        result["checkpoint_sha"] = "random"
    else:
        if args.blocks < 30 and not args.codec:   # bench_stream's early window is blocks 10-30, memory read at 20
            print(f"error: --blocks {args.blocks}: stream at least 30 blocks", file=sys.stderr)
            return 2
        from .streaming.generator import DEFAULT_CODEC, StreamingGenerator

        ckpt = args.checkpoint or DEFAULT_CHECKPOINT
        if args.checkpoint is None and not os.path.exists(ckpt):
            _log(f"no checkpoint at {ckpt}: using random weights")
            from .model.codec import load_codec

            codec = load_codec(DEFAULT_CODEC) if os.path.exists(DEFAULT_CODEC) else None
            gen = StreamingGenerator.random(preset, codec, device=args.device)
        else:
            gen = StreamingGenerator.from_pretrained(ckpt, args.codec_folder, device=args.device)
        if args.switch_guidance is not None:
            try:
                stream = dataclasses.replace(gen.preset.stream, switch_guidance=args.switch_guidance)
            except ValueError as e:
                print(f"error: --switch-guidance: {e}", file=sys.stderr)
                return 2
            gen = gen.with_config(stream=stream)
        result["switch_guidance"] = gen.preset.stream.switch_guidance
        result["checkpoint_sha"] = gen.checkpoint_sha
        _log("codec throughput ...")
        result.update(bench_codec(gen.codec, gen.resolution, args.device))
        if not args.codec:
            _log(f"streaming {args.blocks} blocks ...")
            result.update(bench_stream(gen, args.blocks, args.switch_every))
            if not args.no_teacher:
                _log("teacher (50 steps, CFG) vs student on a training-length clip ...")
                result.update(_teacher_speedup(gen.model, gen.preset, args.device))
    _print_table(result)
    if args.json:
        from .eval.switchbench import nan_to_none

        print(json.dumps(nan_to_none(result)))
    return 0


def _print_table(r: dict) -> None:
    for k, v in r.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b:.3g}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items())
        elif isinstance(v, float):
            v = f"{v:.4g}"
        _log(f"  {k:24s} {v}")

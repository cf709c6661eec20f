"""FashionChameleon Space: widgets wired to the streaming API (fashionchameleon.streaming), nothing else.

    python app.py            # serves on GRADIO_SERVER_NAME / GRADIO_SERVER_PORT when set (default 127.0.0.1:7860)

API (gradio_client): /generate (person, garment, motion, seed, seconds) streams video + status;
/switch (garment image) and /stop act on the same client session's run; /compare (person, garment, garment to
switch to, motion, seed, seconds, switch time) streams the switch strategies side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

try:  # ZeroGPU: the generating function runs in a forked child process; a no-op elsewhere
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover
    def gpu(*args, **kwargs):
        return (lambda f: f) if not args or not callable(args[0]) else args[0]

from fashionchameleon.app.compare import stream_compare
from fashionchameleon.app.run import stream_run
from fashionchameleon.app.state import AppState, examples, load_generator
from fashionchameleon.app.widgets import ImageFile

MAX_SECONDS = int(os.environ.get("FC_MAX_SECONDS", "30"))
SEGMENT_SECONDS = float(os.environ.get("FC_SEGMENT_SECONDS", "0.75"))
GEN, GEN_NOTE = load_generator(os.environ.get("FC_CHECKPOINT"), os.environ.get("FC_CODEC"))
EXAMPLES = examples(GEN.preset.world_size, version=GEN.preset.world_version)
STATE = AppState(GEN, max_active=int(os.environ.get("FC_MAX_ACTIVE", "1")),
                 max_waiting=int(os.environ.get("FC_MAX_WAITING", "8")), examples_hashes=EXAMPLES.hashes,
                 run_ttl_s=float(os.environ.get("FC_RUN_TTL", "900")))
MOTIONS = list(GEN.model.config.prompt_vocab) or ["a person walking"]

NOTICE = (
    "**About the embedded model.** The default model is small (9M parameters, 112x192) and was trained on CPU, "
    "only on FashionChameleon's own synthetic world (procedurally drawn people and garments). On a real photo it "
    "keeps the person and the scene and paints the garment's colours over the upper body as a blocky patch, not "
    "as cloth; a grid of 8-pixel blocks shows. To use a real checkpoint, see *Load a real checkpoint* in the docs "
    "(`docs/real-checkpoints.md`)."
)
RESPONSIBLE = (
    "**Responsible use.** Only upload photos of people who agreed to it. Every generated video is labelled "
    "*AI-generated* (on the picture and in the file's metadata); do not present it as real footage."
)


@gpu(duration=MAX_SECONDS * 3)
def _generate_on_device(person, garment, label, motion, seed, frames, mailbox, out_dir):
    yield from stream_run(GEN, person, garment, label, motion, seed, frames, mailbox, out_dir,
                          segment_seconds=SEGMENT_SECONDS)


def generate(person, garment, motion="walk", seed=0, seconds=6, request: gr.Request = None):
    """Stream a video of `person` wearing `garment`. Yields (video segment, status)."""
    yield from STATE.generate(request, person, garment, motion, seed, seconds, MAX_SECONDS, _generate_on_device)


@gpu(duration=MAX_SECONDS * 6)
def _compare_on_device(person, garment, switch_to, labels, motion, seed, frames, switch_frame, mailbox, out_dir):
    yield from stream_compare(GEN, person, garment, switch_to, labels, motion, seed, frames, switch_frame, mailbox,
                              out_dir)


def compare(person, garment, switch_garment, motion="walk", seed=0, seconds=6, switch_at=3,
            request: gr.Request = None):
    """Stream `full`, `naive` and `restart` side by side, switching to `switch_garment` at `switch_at` seconds."""
    yield from STATE.compare(request, person, garment, switch_garment, motion, seed, seconds, switch_at, MAX_SECONDS,
                             _compare_on_device)


def switch(garment, request: gr.Request = None):
    """Switch the garment of this session's running video (applies at the next block)."""
    return STATE.switch(request, garment)


def stop(request: gr.Request = None):
    """Stop this session's run within one denoising step."""
    return STATE.stop(request)


def pick_garment(evt: gr.SelectData, gallery, request: gr.Request):
    """A click on a garment: switch the running video, or choose the garment for the next run."""
    path = gallery[evt.index][0] if isinstance(gallery[evt.index], (list, tuple)) else gallery[evt.index]
    msg = STATE.switch(request, path, only_if_running=True)
    return path, msg


def final_download(request: gr.Request):
    return STATE.download_for(request)


def on_unload(request: gr.Request):
    STATE.unload(request)


def add_garments(files, gallery):
    gallery = list(gallery or [])
    return gallery + [(f, Path(f).stem) for f in (files or [])]


with gr.Blocks(title="FashionChameleon", delete_cache=(600, 3600)) as demo:
    gr.Markdown("# FashionChameleon\nReal-time, interactive garment video customization: pick a person and a garment, "
                "press **Generate**, then click other garments while the video streams.")
    if GEN_NOTE:
        gr.Markdown(f"> {GEN_NOTE}")
    with gr.Tabs():
        with gr.Tab("Try on", elem_id="tryon-tab"):
            with gr.Row():
                with gr.Column(scale=1):
                    person = ImageFile(type="filepath", label="Person", sources=["upload", "webcam", "clipboard"],
                                       height=220, elem_id="person")
                    gr.Examples([[p] for p in EXAMPLES.persons], inputs=[person],
                                label="Example people (synthetic world)", elem_id="person-examples")
                    garment = ImageFile(type="filepath", label="Selected garment", height=160, interactive=True,
                                        elem_id="selected-garment")
                    garments = gr.Gallery(value=[(g, f"garment {i}") for i, g in enumerate(EXAMPLES.garments)],
                                          label="Garments: click one (during a run it switches the video)", columns=4,
                                          height=220, allow_preview=False, elem_id="garments")
                    uploads = gr.File(label="Add your own garment images", file_count="multiple", file_types=["image"])
                    with gr.Row():
                        motion = gr.Dropdown(MOTIONS, value=MOTIONS[0], label="Motion")
                        seed = gr.Number(value=0, precision=0, label="Seed")
                    seconds = gr.Slider(2, MAX_SECONDS, value=min(8, MAX_SECONDS), step=1, label="Length (seconds)")
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary", elem_id="generate")
                        halt = gr.Button("Stop", elem_id="stop")
                with gr.Column(scale=2):
                    video = gr.Video(label="Live video (AI-generated)", streaming=True, autoplay=True, height=512,
                                     elem_id="video")
                    status = gr.Markdown("Ready.", elem_id="status")
                    download = gr.File(label="Download the whole video (mp4)")
        with gr.Tab("Compare switch strategies", elem_id="compare-tab"):
            gr.Markdown("The same person, garment, motion and seed streamed by three KV-cache strategies side by "
                        "side, the switch at the same frame: **full** (this project's rescheduling), **naive** "
                        "(only the garment refreshed) and **restart** (a new generation from the last frame).")
            with gr.Row():
                with gr.Column(scale=1):
                    c_person = ImageFile(type="filepath", label="Person", sources=["upload", "clipboard"],
                                         height=180, value=EXAMPLES.persons[0], elem_id="compare-person")
                    with gr.Row():
                        c_garment = ImageFile(type="filepath", label="Garment", height=120,
                                              value=EXAMPLES.garments[0], elem_id="compare-garment")
                        c_switch = ImageFile(type="filepath", label="Switch to", height=120,
                                             value=EXAMPLES.garments[1], elem_id="compare-switch")
                    with gr.Row():
                        c_motion = gr.Dropdown(MOTIONS, value=MOTIONS[0], label="Motion")
                        c_seed = gr.Number(value=0, precision=0, label="Seed")
                    c_seconds = gr.Slider(2, MAX_SECONDS, value=min(6, MAX_SECONDS), step=1, label="Length (seconds)")
                    c_at = gr.Slider(0, MAX_SECONDS, value=2, step=0.5, label="Switch at (seconds)")
                    with gr.Row():
                        c_go = gr.Button("Compare", variant="primary", elem_id="compare-go")
                        c_halt = gr.Button("Stop", elem_id="compare-stop")
                with gr.Column(scale=2):
                    c_video = gr.Video(label="full | naive | restart (AI-generated)", streaming=True, autoplay=True,
                                       height=320, elem_id="compare-video")
                    c_status = gr.Markdown("Ready.", elem_id="compare-status")
    gr.Markdown(NOTICE + "\n\n" + RESPONSIBLE)
    switch_image = ImageFile(type="filepath", visible=False)
    switch_ack = gr.Textbox(visible=False)
    switch_api = gr.Button(visible=False)

    garments.select(pick_garment, inputs=[garments], outputs=[garment, switch_ack], concurrency_limit=None,
                    api_visibility="private")
    uploads.upload(add_garments, inputs=[uploads, garments], outputs=[garments], api_visibility="private")
    go.click(generate, inputs=[person, garment, motion, seed, seconds], outputs=[video, status],
             api_name="generate", concurrency_limit=16, concurrency_id="generate")
    halt.click(stop, outputs=[switch_ack], api_name="stop", concurrency_limit=None)
    switch_api.click(switch, inputs=[switch_image], outputs=[switch_ack], api_name="switch", concurrency_limit=None)
    status.change(final_download, outputs=[download], api_visibility="private")
    c_go.click(compare, inputs=[c_person, c_garment, c_switch, c_motion, c_seed, c_seconds, c_at],
               outputs=[c_video, c_status], api_name="compare", concurrency_limit=16, concurrency_id="generate")
    c_halt.click(stop, outputs=[switch_ack], api_visibility="private", concurrency_limit=None)
    demo.unload(on_unload)

demo.queue(max_size=64, default_concurrency_limit=4)

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                max_file_size="10mb", allowed_paths=[str(EXAMPLES.root)])

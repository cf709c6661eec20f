"""FashionChameleon Space: widgets wired to the streaming API (fashionchameleon.streaming), nothing else.

    python app.py            # serves on GRADIO_SERVER_NAME / GRADIO_SERVER_PORT when set (default 127.0.0.1:7860)

API (gradio_client): /generate (person, garment, motion, seed, seconds) streams video + status;
/switch (garment image) and /stop act on the same client session's run.
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

from fashionchameleon.app_support import AppState, examples, load_generator
from fashionchameleon.streaming.runner import stream_run

MAX_SECONDS = int(os.environ.get("FC_MAX_SECONDS", "30"))
GEN, GEN_NOTE = load_generator(os.environ.get("FC_CHECKPOINT"), os.environ.get("FC_CODEC"))
EXAMPLES = examples(GEN.resolution[1])
STATE = AppState(GEN, max_active=int(os.environ.get("FC_MAX_ACTIVE", "1")),
                 max_waiting=int(os.environ.get("FC_MAX_WAITING", "8")), examples_hashes=EXAMPLES.hashes)
MOTIONS = list(GEN.model.config.prompt_vocab) or ["a person walking"]

NOTICE = (
    "**About the embedded model.** The default `tiny` model was trained only on FashionChameleon's own synthetic "
    "world (procedurally drawn people and garments, 128x128). Real photos are out of distribution: they run, "
    "but the result will look like the synthetic world. To use a real checkpoint, see *Load a real checkpoint* in "
    "the docs (`docs/real-checkpoints.md`)."
)
RESPONSIBLE = (
    "**Responsible use.** Only upload photos of people who agreed to it. Every generated video is labelled "
    "*AI-generated* (on the picture and in the file's metadata); do not present it as real footage."
)


@gpu(duration=MAX_SECONDS * 3)
def _generate_on_device(person, garment, label, motion, seed, frames, mailbox, out_dir):
    yield from stream_run(GEN, person, garment, label, motion, seed, frames, mailbox, out_dir)


def generate(person, garment, motion="walk", seed=0, seconds=6, request: gr.Request = None):
    """Stream a video of `person` wearing `garment`. Yields (video segment, status)."""
    yield from STATE.generate(request, person, garment, motion, seed, seconds, MAX_SECONDS, _generate_on_device)


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
    with gr.Row():
        with gr.Column(scale=1):
            person = gr.Image(label="Person", type="numpy", sources=["upload", "webcam", "clipboard"], height=220,
                              elem_id="person")
            gr.Examples([[p] for p in EXAMPLES.persons], inputs=[person], label="Example people (synthetic world)",
                        elem_id="person-examples")
            garment = gr.Image(label="Selected garment", type="filepath", height=160, interactive=True,
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
            video = gr.Video(label="Live video (AI-generated)", streaming=True, autoplay=True, height=512, elem_id="video")
            status = gr.Markdown("Ready.", elem_id="status")
            download = gr.File(label="Download the whole video (mp4)")
    gr.Markdown(NOTICE + "\n\n" + RESPONSIBLE)
    switch_image = gr.Image(type="filepath", visible=False)
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
    demo.unload(on_unload)

demo.queue(max_size=64, default_concurrency_limit=4)

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                max_file_size="10mb", allowed_paths=[str(EXAMPLES.root)])

"""FashionChameleon Space (placeholder until the streaming app lands: it says so honestly)."""

import os

import gradio as gr

with gr.Blocks(title="FashionChameleon") as demo:
    gr.Markdown(
        "# FashionChameleon\n"
        "Real-time, interactive garment video customization.\n\n"
        "**This page is a placeholder.** The streaming demo is under construction: the model, the KV cache "
        "and the command line (`python -m fashionchameleon --help`) exist; the live app does not yet."
    )

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))

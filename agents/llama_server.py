"""The embedded LLM's process: llama.cpp's own HTTP server (from the ``xllamacpp`` wheel)
serving one GGUF model on one address until SIGTERM or SIGINT. It is started by
:class:`botarena.agents.embedded_llm.EmbeddedLlama` (``python -m
botarena.agents.llama_server --model FILE --port N ...``); every setting comes from its
arguments, none from the environment, and it never downloads anything (``offline``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m botarena.agents.llama_server")
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--alias", required=True, help="the model's id in /v1/models")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=4, help="requests decoded at once")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--ctx", type=int, default=2048, help="tokens each slot holds")
    parser.add_argument("--cache-ram-mib", type=int, default=64, help="prompt cache cap")
    return parser.parse_args(argv)


def params(args: argparse.Namespace) -> Any:
    """The server's ``xllamacpp.CommonParams``, from the arguments alone."""
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.model_alias = {args.alias}
    p.hostnames = [args.host]
    p.port = args.port
    p.reuse_port = False  # nobody else may bind our port beside us
    p.offline = True  # never fetch a model or a template
    p.ui = False  # no web UI: an API for the agents only
    p.cors_origins = ""  # no web page in a browser may read its answers
    p.n_parallel = args.parallel
    p.kv_unified = False  # each slot owns its share of the context
    p.n_ctx = args.ctx * args.parallel
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.cache_ram_mib = args.cache_ram_mib
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    # The server's threads inherit this mask, so SIGTERM (also sent when the parent dies)
    # and SIGINT wait for sigwait below, even while the model loads.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    import xllamacpp

    try:
        server = xllamacpp.Server(params(args))  # returns once the model is loaded
    except (RuntimeError, ValueError) as exc:
        print(f"llama_server: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"llama_server: serving {args.alias} on {server.listening_address}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    del server  # stops the HTTP server and the decoding loop, and waits for them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the extension's threads are gone: skip the interpreter's teardown


if __name__ == "__main__":
    sys.exit(main())

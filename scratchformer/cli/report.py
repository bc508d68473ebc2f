"""``scratchformer report RUN_DIR``: one offline page per run (``scratchformer.viz.report``).

    scratchformer report runs/copy                     # writes runs/copy/report.html
    scratchformer report runs/gpt --serve --port 8000  # live, on http://127.0.0.1:8000/
    scratchformer report runs/gpt --watch              # re-writes report.html as the run goes

``register(subparsers)`` adds the command; nothing heavy is imported.
"""

from __future__ import annotations

import argparse

from .common import CLIError, describe, path_arg, user_errors

EXAMPLES = """examples:
  scratchformer report runs/copy
  scratchformer report runs/gpt --serve --port 8000
  scratchformer report runs/gpt --watch
"""


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 65535] (0: any free "
                                         f"port), got {text!r}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write RUN_DIR/report.html: one offline page showing how the run learnt",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Write RUN_DIR/report.html, one self-contained page (no network, works "
                    "from file://): loss, evaluation, learning rate, tokens/s, gradient norms "
                    "and update/weight ratios per layer, the attention on the probe at each "
                    "snapshot step with a slider, the configuration, the machine and insights. "
                    "--serve shows it live from a local server (127.0.0.1 only); --watch "
                    "re-writes the file while the run goes on.")
    p.add_argument("run_dir", metavar="RUN_DIR", type=path_arg,
                   help="a run directory (the --out of a training command)")
    p.add_argument("--serve", action="store_true",
                   help="serve the live page on http://127.0.0.1:PORT/ until Ctrl-C")
    p.add_argument("--port", type=_port, help="port for --serve (default 8000; 0: any free one)")
    p.add_argument("--watch", action="store_true",
                   help="re-write report.html whenever the run's files change, until Ctrl-C")
    p.set_defaults(func=report_command)


def report_command(args) -> int:
    from ..viz.report import make_server, watch_report, write_report

    if args.port is not None and not args.serve:
        raise CLIError("--port needs --serve")
    if args.serve and args.watch:
        raise CLIError("--serve and --watch: choose one (the served page updates itself)")
    try:
        if args.serve:
            server = make_server(args.run_dir, 8000 if args.port is None else args.port)
        elif args.watch:
            watch_report(args.run_dir, rounds=1)  # fails here on a bad directory
        else:
            path = write_report(args.run_dir)
    except user_errors() as e:
        raise CLIError(describe(e)) from None
    if not (args.serve or args.watch):
        print(f"wrote {path} (open it in a browser; works offline)")
        return 0
    try:
        if args.serve:
            print(f"serving {args.run_dir} at http://127.0.0.1:{server.server_address[1]}/ "
                  f"(Ctrl-C to stop)", flush=True)
            server.serve_forever()
        else:
            print(f"watching {args.run_dir}: report.html is re-written as the run goes "
                  f"(Ctrl-C to stop)", flush=True)
            watch_report(args.run_dir, on_write=lambda p: print(f"wrote {p}", flush=True))
    except KeyboardInterrupt:  # the normal way to stop
        print("stopped")
    finally:
        if args.serve:
            server.server_close()
    return 0

"""Option defaults and help texts every command spells the same way (kubectl's conventions).

`-o/--output` is always the FORMAT, `-f/--output-file` always the file written, `--timeout` has one
default everywhere. Nothing heavy is imported here: this module is loaded at start-up.
"""

from __future__ import annotations

DEFAULT_TIMEOUT = 60.0
TIMEOUT_HELP = "Seconds allowed per node (connect included) or per API call."
OUTPUT_FILE_HELP = "Write the report to this file instead of stdout."
SSH_HELP = {
    "user": "SSH user (default: ~/.ssh/config, then $USER).",
    "key": "SSH private key file (repeatable); the agent and ~/.ssh keys are also tried.",
    "port": "SSH port (default: ~/.ssh/config, then 22).",
    "config": "ssh_config file (default ~/.ssh/config).",
    "jump": "Jump host [user@]host[:port] (or ProxyJump in the ssh config).",
    "known_hosts": "known_hosts file (default ~/.ssh/known_hosts).",
    "accept_new": "Accept and record unknown host keys (changed keys are still refused).",
}


def format_error(value: str, formats: tuple[str, ...] | list[str]) -> str:
    """The one-line error for a bad -o value; a file name there is the old meaning of --output."""
    hint = ""
    if "." in value or "/" in value:
        hint = f" (-o/--output is the format, as in kubectl; write to a file with -f/--output-file {value})"
    return f"-o {value!r}: choose from {', '.join(formats)}{hint}"

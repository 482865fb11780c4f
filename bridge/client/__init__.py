"""The client's side of a bridge run, with no Blender in it: the one command line (``command``), the
process whose events arrive on a queue (``process``), the ssh transport that runs the same command on
another machine (``ssh``), and the errors a client reports when a job cannot start (``errors``).
Standard library only (it speaks ``protocol``): the add-on's UI modules call it inside Blender, the
tests and scripts call it as it is.
"""
from .command import CODE_ROOT, bridge_args, bridge_command, bridge_env, tool_env
from .errors import RemoteError, StartError
from .process import BridgeProcess, PipeProcess, run_to_end
from .ssh import Machine, RemoteProcess, copy_job

__all__ = ["CODE_ROOT", "BridgeProcess", "Machine", "PipeProcess", "RemoteError", "RemoteProcess", "StartError",
           "bridge_args", "bridge_command", "bridge_env", "copy_job", "run_to_end", "tool_env"]

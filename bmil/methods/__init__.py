"""Methods, one class (and file) each on a shared base, selected in configs by ``class_path``:

    model:
      class_path: bmil.methods.BMIL      # or BC, NoiseBC, CCIL, VINS (bmil.methods.<name>), your own
      init_args: {...}

Add a method: subclass ``ImitationMethod`` in a new file, give it its networks, ``make_optimizers``
and its own phase of each epoch (``before_policy``; ``policy_batch`` or ``agent`` where they
differ), and register it (``@register("name", config=...)``): studies, the tuner and the command
line then know it by that name.
"""

from bmil.methods.base import DemoSettings, EvalSettings, ImitationMethod, PolicySettings
from bmil.methods.bc import BC
from bmil.methods.bmil import BMIL, ModelSettings
from bmil.methods.ccil import CCIL, CCILSettings
from bmil.methods.noise_bc import NoiseBC, NoiseSettings
from bmil.methods.registry import Method, get_method, method_of, register, registered
from bmil.methods.vins import VINS, VINSSettings
from bmil.traces import TraceSettings

__all__ = ["BC", "BMIL", "CCIL", "NoiseBC", "VINS", "CCILSettings", "DemoSettings", "EvalSettings", "ImitationMethod",
           "Method", "ModelSettings", "NoiseSettings", "PolicySettings", "TraceSettings", "VINSSettings", "get_method",
           "method_of", "register", "registered"]

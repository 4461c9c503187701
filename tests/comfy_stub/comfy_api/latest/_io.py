"""Minimal V3 io: schema objects that record what the node declares."""

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"


class Input:
    io_type = None

    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None,
                 extra_dict=None, raw_link=None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict or {}

    def get_io_type(self):
        return self.io_type


class WidgetInput(Input):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None,
                 default=None, socketless=None, widget_type=None, force_input=None,
                 extra_dict=None, raw_link=None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
        self.default = default
        self.socketless = socketless
        self.force_input = force_input


class Output:
    io_type = None

    def __init__(self, id=None, display_name=None, tooltip=None, is_output_list=False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def get_io_type(self):
        return self.io_type


def _type(name, widget_input=None):
    class T:
        io_type = name

        class Input(widget_input or Input):
            io_type = name

        class Output(Output):
            io_type = name

    T.__name__ = name
    return T


class _IntInput(WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                 min=None, max=None, step=None, control_after_generate=None, display_mode=None,
                 socketless=None, force_input=None, extra_dict=None, raw_link=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None,
                         force_input, extra_dict, raw_link)
        self.min, self.max, self.step = min, max, step
        self.control_after_generate = control_after_generate


class _FloatInput(WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                 min=None, max=None, step=None, round=None, display_mode=None, socketless=None,
                 force_input=None, extra_dict=None, raw_link=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None,
                         force_input, extra_dict, raw_link)
        self.min, self.max, self.step, self.round = min, max, step, round


class _StringInput(WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None,
                 multiline=False, placeholder=None, default=None, dynamic_prompts=None,
                 socketless=None, force_input=None, extra_dict=None, raw_link=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None,
                         force_input, extra_dict, raw_link)
        self.multiline = multiline
        self.placeholder = placeholder


class _BooleanInput(WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                 label_on=None, label_off=None, socketless=None, force_input=None, extra_dict=None,
                 raw_link=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None,
                         force_input, extra_dict, raw_link)


class _ComboInput(WidgetInput):
    def __init__(self, id, options=None, display_name=None, optional=False, tooltip=None, lazy=None,
                 default=None, control_after_generate=None, upload=None, image_folder=None,
                 remote=None, socketless=None, extra_dict=None, raw_link=None):
        if isinstance(options, type) and issubclass(options, Enum):
            options = [v.value for v in options]
        if isinstance(default, Enum):
            default = default.value
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, None,
                         extra_dict, raw_link)
        self.options = options
        self.upload = upload
        self.control_after_generate = control_after_generate


Image = _type("IMAGE")
Mask = _type("MASK")
Latent = _type("LATENT")
Conditioning = _type("CONDITIONING")
Model = _type("MODEL")
Vae = _type("VAE")
Clip = _type("CLIP")
Int = _type("INT", _IntInput)
Float = _type("FLOAT", _FloatInput)
String = _type("STRING", _StringInput)
Boolean = _type("BOOLEAN", _BooleanInput)
Combo = _type("COMBO", _ComboInput)

_custom_types: dict = {}


def Custom(io_type):
    if io_type not in _custom_types:
        _custom_types[io_type] = _type(io_type)
    return _custom_types[io_type]


@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False


class _Hidden:
    unique_id = None
    prompt = None
    extra_pnginfo = None


class ComfyNode:
    hidden = _Hidden()

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs):
        raise NotImplementedError


class NodeOutput:
    def __init__(self, *args: Any, ui=None, expand=None, block_execution=None):
        self.args = args
        self.ui = ui

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    def __getitem__(self, index):
        return self.args[index]

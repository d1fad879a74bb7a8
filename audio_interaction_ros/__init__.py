"""audio_interaction_ros: the Audio-Interaction listen/speak model as ROS 2 nodes.

One thing happens at import, before transformers is imported by anything here: transformers
imports torchao (the quantization library, requirements.txt) whenever it is installed, and that
import logs two lines about torchao's CUDA extensions not loading on a CPU-only torch and two
torch warnings about enums torchao registers. None of them concerns this package (weight-only
quantization uses neither), and a user must see one clear line per real error, so exactly those
messages are filtered out; everything else those loggers say still shows.
"""
import logging


def _is_torchao_import_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ((message.startswith("Failed to load ") and "torchao" in message
                 and "Could not load this library" in message)
                or "Calling register_constant() on Enum subclasses is deprecated" in message)


logging.getLogger("torchao").addFilter(_is_torchao_import_noise)
logging.getLogger("torch.utils._pytree").addFilter(_is_torchao_import_noise)

"""Reading frames from videos and frame folders behind one interface.

``open_clip_source(path)`` returns a :class:`FrameSource`: ``len(source)`` is the frame
count and ``source.get_frames(indices)`` returns RGB uint8 frames (N, H, W, 3) in the
order of ``indices`` (repeats allowed). Three backends:

- :class:`DecordSource`: decord's ``VideoReader.get_batch`` (the default for files).
- :class:`PyAVSource`: PyAV, decoding sequentially from the start (seek-free, exact; the
  fallback, and the backend where decord has no wheel).
- :class:`FrameFolderSource`: a folder of png/jpg/bmp frames in natural order.

Every failure to read a file (missing, not a video, zero frames, truncated, corrupt,
timed out) is a ``VideoError`` with a one-line message that names the file.

- :mod:`.frame_source`   the :class:`FrameSource` interface
- :mod:`.pyav_source`    PyAV, and the frame-count probe
- :mod:`.decord_source`  decord, its frame count checked against PyAV's
- :mod:`.frame_folder`   folders of frame images
- :mod:`.timeout`        the time bound on every open and read
- :mod:`.backends`       :func:`open_clip_source`, which picks one
"""

from attribnet.data.video.backends import BACKENDS, open_clip_source
from attribnet.data.video.decord_source import DecordSource
from attribnet.data.video.frame_folder import FrameFolderSource, natural_key
from attribnet.data.video.frame_source import FrameSource
from attribnet.data.video.pyav_source import PyAVSource, probe_frame_count

__all__ = [
    "BACKENDS",
    "DecordSource",
    "FrameFolderSource",
    "FrameSource",
    "PyAVSource",
    "natural_key",
    "open_clip_source",
    "probe_frame_count",
]
